package config

import (
	"errors"
	"net/netip"
	"reflect"
	"time"

	"github.com/xlb-dev/xlb/bgp"
)

// BGP is the optional bgp section: this host announces each service VIP
// (/32, /128) to its routers while the service has an active backend and
// the host forwards, so that several xlb hosts behind a router's ECMP share
// the VIPs. See the bgp package.
type BGP struct {
	// LocalAS is this host's AS number (1..4294967295). Required.
	LocalAS uint32 `yaml:"local_as"`
	// RouterID is the BGP router ID, an IPv4 address. Required.
	RouterID netip.Addr `yaml:"router_id"`
	// ListenPort is the TCP port to accept sessions on; 0 (the default)
	// does not listen: xlb opens the sessions to its neighbours.
	ListenPort uint16 `yaml:"listen_port"`
	// Neighbors are the routers to peer with. At least one.
	Neighbors []BGPNeighbor `yaml:"neighbors"`
	// NextHop is the next hop announced with IPv4 VIPs (this host's
	// address on the routers' segment); required when a service has an
	// IPv4 VIP. NextHop6 is the same for IPv6 VIPs.
	NextHop  netip.Addr `yaml:"next_hop"`
	NextHop6 netip.Addr `yaml:"next_hop6"`
	// WithdrawWait is how long a clean shutdown waits, after withdrawing
	// every route and while still forwarding, for the routers to move the
	// traffic away before it stops. Default 2s; 0 written in the file
	// means no wait.
	WithdrawWait time.Duration `yaml:"withdraw_wait"`

	pos pos
}

// BGPNeighbor is one BGP peer.
type BGPNeighbor struct {
	Address netip.Addr `yaml:"address"`
	AS      uint32     `yaml:"as"`
	// Password, when set, signs the session with TCP MD5.
	Password string `yaml:"password"`
	// HoldTime is the proposed hold time, whole seconds, 3s or more.
	// Default 90s. A router drops a dead host's routes after it.
	HoldTime time.Duration `yaml:"hold_time"`
	// Port is the neighbour's BGP port. Default 179.
	Port uint16 `yaml:"port"`

	pos pos
}

// DefaultWithdrawWait is BGP.WithdrawWait when unset.
const DefaultWithdrawWait = 2 * time.Second

func (b *BGP) setPos(p pos)         { b.pos = p }
func (n *BGPNeighbor) setPos(p pos) { n.pos = p }

// normalize fills the bgp section's defaults (nil-safe).
func (b *BGP) normalize() {
	if b == nil {
		return
	}
	if b.WithdrawWait == 0 && !b.pos.has("withdraw_wait") {
		b.WithdrawWait = DefaultWithdrawWait
	}
	for i := range b.Neighbors {
		n := &b.Neighbors[i]
		if n.HoldTime == 0 && !n.pos.has("hold_time") {
			n.HoldTime = bgp.DefaultHoldTime
		}
	}
}

// validateBGP checks the bgp section, if any, with the bgp package's rules
// (one source of truth), each error on the line of the field it names, and
// adds what only the configuration knows: the next hops the services' VIP
// families need, and the withdraw wait.
func (c *Config) validateBGP(e *errs) {
	b := c.BGP
	if b == nil || c.failed["bgp"] {
		return
	}
	const p = "bgp"
	sc := b.SpeakerConfig()
	var list interface{ Unwrap() []error }
	errsOf := []error{sc.Validate()}
	if errors.As(errsOf[0], &list) {
		errsOf = list.Unwrap()
	}
	for _, err := range errsOf {
		var ce *bgp.ConfigError
		if !errors.As(err, &ce) {
			continue
		}
		path, at := p+"."+ce.Path(), b.pos
		if ce.Neighbor >= 0 {
			at = b.Neighbors[ce.Neighbor].pos
		}
		if c.failed[path] || c.failedUnder(path+"[") {
			continue // decoding already said what is wrong
		}
		line := at.at(ce.Field)
		switch ce.Problem {
		case bgp.Missing:
			if ce.Field == "next_hop" && c.needsHop() {
				continue // said below, with the VIP family that needs it
			}
			e.add(line, path, ErrMissing, "%s", ce.Reason)
		case bgp.Duplicate:
			e.add(line, path, ErrDuplicate, "%s", ce.Reason)
		default:
			e.add(line, path, ErrValue, "%s", ce.Reason)
		}
	}
	need4, need6 := false, false
	for _, s := range c.Services {
		need4 = need4 || s.VIP.Is4()
		need6 = need6 || s.VIP.Is6()
	}
	if need4 && !b.NextHop.IsValid() && !c.failed[p+".next_hop"] {
		e.add(b.pos.at("next_hop"), p+".next_hop", ErrMissing, "next_hop is required: a service has an IPv4 VIP")
	}
	if need6 && !b.NextHop6.IsValid() && !c.failed[p+".next_hop6"] {
		e.add(b.pos.at("next_hop6"), p+".next_hop6", ErrMissing, "next_hop6 is required: a service has an IPv6 VIP")
	}
	if b.WithdrawWait < 0 {
		e.add(b.pos.at("withdraw_wait"), p+".withdraw_wait", ErrValue, "%v is negative", b.WithdrawWait)
	}
}

// needsHop reports whether a service's VIP needs a next hop the bgp section
// lacks (then that is the error to report, not "a next hop is required").
func (c *Config) needsHop() bool {
	for _, s := range c.Services {
		if s.VIP.Is4() && !c.BGP.NextHop.IsValid() || s.VIP.Is6() && !c.BGP.NextHop6.IsValid() {
			return true
		}
	}
	return false
}

// SpeakerConfig maps the section onto the bgp package's configuration (the
// caller sets its Logger).
func (b *BGP) SpeakerConfig() bgp.Config {
	sc := bgp.Config{LocalAS: b.LocalAS, RouterID: b.RouterID, ListenPort: b.ListenPort,
		NextHop: b.NextHop, NextHop6: b.NextHop6}
	for _, n := range b.Neighbors {
		sc.Neighbors = append(sc.Neighbors, bgp.Neighbor{Address: n.Address, AS: n.AS, Password: n.Password,
			HoldTime: n.HoldTime, Port: n.Port})
	}
	return sc
}

// bgpView is the bgp section without its positions, for comparison.
func bgpView(b *BGP) *BGP {
	if b == nil {
		return nil
	}
	v := *b
	v.pos = pos{}
	v.Neighbors = nil
	for _, n := range b.Neighbors {
		n.pos = pos{}
		v.Neighbors = append(v.Neighbors, n)
	}
	return &v
}

// Equal reports whether two bgp sections (either may be nil) say the same,
// wherever in their files they are.
func (b *BGP) Equal(o *BGP) bool { return reflect.DeepEqual(bgpView(b), bgpView(o)) }
