package control

import (
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/sched"
)

// svcState is a running service: its config and its backends' runtime state.
type svcState struct {
	cfg      config.Service
	index    int // sched.ServiceConfig.Index, stable for the service's life
	strategy sched.Strategy
	backends []*beState // primaries first, then fallbacks, in config order

	// The last scheduler snapshot and the inputs it was built from: a
	// change elsewhere does not rebuild this service's Maglev table.
	built  *sched.Service
	inputs []sched.Backend
	ss     slowStartState // slow start's memory (slowstart.go)

	policy dataplane.Policy // acl and limits: the config's, or the API's until a reload
}

// beState is a running backend.
type beState struct {
	id       uint32 // stable, never reused in the process
	key      beKey
	name     string
	addr     netip.Addr
	port     uint16 // config port (nat: target port, 0 keeps the service port)
	fallback bool

	cfgWeight    uint32 // from the config
	weight       uint32 // in effect: cfgWeight or the API's override
	overWeight   bool   // weight set through the API
	cfgDisabled  bool
	disabled     bool // in effect
	overDisabled bool // enable/disable through the API

	checks     []checkRef   // none for kind none
	throughVIP bool         // a check goes through the VIP: it needs its policy route
	health     health.State // health.Combine of the checks' states; StateUp when there are none
	since      time.Time
	reason     string
	load       float64
	hasLoad    bool
	hop        dataplane.NextHop
	hopErr     string // why the next hop is unresolved
	resolved   bool
	tried      bool // a resolution has been attempted

	upper, lower uint32 // connection thresholds (0: none)
	overloaded   bool   // at or over upper, not yet below lower: no new flows
	active       uint64 // connections as the data path last counted them
}

// configure takes the backend's settings from cb, keeping the API's weight
// and enable/disable overrides while the configured value stays the same.
func (b *beState) configure(cb *config.Backend, fallback bool) {
	b.name, b.addr, b.port, b.fallback = cb.Name, cb.Address, cb.Port, fallback
	if cw := cb.WeightOf(); cw != b.cfgWeight || !b.overWeight {
		b.cfgWeight, b.weight, b.overWeight = cw, cw, false
	}
	if cb.Disabled != b.cfgDisabled || !b.overDisabled {
		b.cfgDisabled, b.disabled, b.overDisabled = cb.Disabled, cb.Disabled, false
	}
	b.upper, b.lower = cb.UpperThreshold, cb.LowerThreshold
	if b.upper == 0 {
		b.overloaded = false
	}
}

// beKey identifies a backend across reloads.
type beKey struct {
	service string
	addr    netip.Addr
	port    uint16
}

// eligible reports whether b may get new flows of its own accord (before
// the fallback rule): healthy, enabled, resolved and weighted.
func (b *beState) eligible() bool {
	return b.upish() && b.weight > 0 && !b.overloaded
}

// upish is Up as the scheduler sees it, before the fallback rule: healthy,
// enabled and with a resolved next hop.
func (b *beState) upish() bool {
	return b.health == health.StateUp && !b.disabled && b.resolved
}

// schedBackends returns the scheduler's view of s: a fallback backend is up
// only while no primary backend is eligible.
func (s *svcState) schedBackends() []sched.Backend {
	primaryOK := false
	for _, b := range s.backends {
		if !b.fallback && b.eligible() {
			primaryOK = true
			break
		}
	}
	out := make([]sched.Backend, len(s.backends))
	for i, b := range s.backends {
		up := b.upish()
		if b.fallback && primaryOK {
			up = false
		}
		w := b.weight
		if b.overloaded {
			w = 0 // like a drain: no new flows, existing flows stay
		}
		out[i] = sched.Backend{ID: b.id, Name: b.name, Weight: w, Up: up, Load: b.load}
	}
	return out
}

// spec builds the dataplane's view of s around its scheduler snapshot.
func (s *svcState) spec(ss *sched.Service) dataplane.ServiceSpec {
	c := &s.cfg
	m := c.Method
	sp := dataplane.ServiceSpec{
		Name:    c.Name,
		VIP:     c.VIP,
		Port:    c.Port,
		Proto:   uint8(c.Protocol),
		Method:  m,
		Sched:   ss,
		Targets: make([]dataplane.Target, len(s.backends)),
		Policy:  s.policy,
	}
	if m == dataplane.MethodTunnel {
		sp.TunnelSource = c.TunnelSource
	}
	groupSpec(c, &sp)
	for i, b := range s.backends {
		t := dataplane.Target{Addr: b.addr, Hop: b.hop}
		if m == dataplane.MethodNAT {
			t.Port = b.port
		}
		if !b.resolved {
			t.Hop = dataplane.NextHop{}
		}
		sp.Targets[i] = t
	}
	s.encapQUIC(&sp)
	return sp
}

// checkSpec is what a backend's health check is made of: a reload
// replaces the check when it differs.
type checkSpec struct {
	health config.Health
	target netip.AddrPort
	mark   uint32 // the sockets' mark for a check through the VIP, else 0
}

func (a checkSpec) equal(b checkSpec) bool {
	return a.target == b.target && a.mark == b.mark && a.health.Equal(b.health)
}
