package control

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
)

// StatsSource feeds data-path counters to the API and the metrics.
// *dataplane.Dataplane is one.
type StatsSource interface {
	Stats() []dataplane.WorkerStats
}

// FlowStatsSource is an optional extension of a StatsSource: per-service and
// per-backend traffic counters. *dataplane.Dataplane is one.
type FlowStatsSource interface {
	FlowStats() []dataplane.ServiceStats
}

// TrafficStatus is what the data path counted for a service or a backend:
// packets and bytes received for it (client to VIP) and flows started.
// NoBackendDrops (services only) counts packets no backend could take.
// OutPackets and OutBytes are NAT replies translated back to clients (0 for
// direct routing and tunnelling, whose replies bypass the LB).
type TrafficStatus struct {
	Packets        uint64 `json:"packets"`
	Bytes          uint64 `json:"bytes"`
	NewFlows       uint64 `json:"new_flows"`
	NoBackendDrops uint64 `json:"no_backend_drops,omitempty"`
	OutPackets     uint64 `json:"out_packets,omitempty"`
	OutBytes       uint64 `json:"out_bytes,omitempty"`
}

// flowStats returns the data path's per-service counters by service name
// (nil when the StatsSource has none). Call it without c.mu held.
func (c *Controller) flowStats() map[string]*dataplane.ServiceStats {
	fs, ok := c.opts.Stats.(FlowStatsSource)
	if !ok || fs == nil {
		return nil
	}
	list := fs.FlowStats()
	out := make(map[string]*dataplane.ServiceStats, len(list))
	for i := range list {
		out[list[i].Name] = &list[i]
	}
	return out
}

func svcTraffic(s *dataplane.ServiceStats) *TrafficStatus {
	if s == nil {
		return nil
	}
	return &TrafficStatus{Packets: s.Packets, Bytes: s.Bytes, NewFlows: s.NewFlows, NoBackendDrops: s.NoBackend,
		OutPackets: s.OutPackets, OutBytes: s.OutBytes}
}

// beTraffic finds the backend with scheduler ID id in s.
func beTraffic(s *dataplane.ServiceStats, id uint32) *TrafficStatus {
	if s == nil {
		return nil
	}
	for i := range s.Backends {
		if b := &s.Backends[i]; b.ID == id {
			return beTrafficOf(b)
		}
	}
	return nil
}

// ServiceStatus is one service as the API shows it.
type ServiceStatus struct {
	Name      string           `json:"name"`
	VIP       string           `json:"vip"`
	Port      uint16           `json:"port"`
	Protocol  config.Protocol  `json:"protocol"`
	Method    config.Method    `json:"method"`
	Scheduler config.Scheduler `json:"scheduler"`
	// Backends counts the configured backends (fallbacks included); Up
	// counts those that receive new flows (up, enabled, resolved,
	// weighted).
	Backends int `json:"backends"`
	Up       int `json:"up"`
	// Fallback reports that the fallback pool is taking the new flows.
	Fallback bool `json:"fallback_active"`
	// Traffic is the data path's count for the service (absent without
	// a data path).
	Traffic *TrafficStatus `json:"traffic,omitempty"`
	// VIPs and Ports list a service group's VIPs and ports or ranges
	// (absent for a service of one VIP and port); Persistence is
	// "TIMEOUT/PREFIX" for a persistent service; OnePacket and SlowStart
	// as configured.
	VIPs        []string `json:"vips,omitempty"`
	Ports       []string `json:"ports,omitempty"`
	Persistence string   `json:"persistence,omitempty"`
	OnePacket   bool     `json:"one_packet,omitempty"`
	SlowStart   string   `json:"slow_start,omitempty"`
}

// BackendStatus is one backend as the API shows it.
type BackendStatus struct {
	ID           uint32    `json:"id"`
	Name         string    `json:"name"`
	Address      string    `json:"address"`
	Port         uint16    `json:"port,omitempty"`
	Fallback     bool      `json:"fallback,omitempty"`
	Weight       uint32    `json:"weight"`
	ConfigWeight uint32    `json:"config_weight"`
	Disabled     bool      `json:"disabled"`
	Health       string    `json:"health"` // unknown, up, down
	Since        time.Time `json:"since"`
	Reason       string    `json:"reason,omitempty"`
	// Active reports that the backend gets new flows.
	Active  bool   `json:"active"`
	Check   string `json:"check,omitempty"`
	NextHop string `json:"next_hop,omitempty"` // "ifindex 3 mac 02:..." or why not
	// Load is the last load figure the health probe reported, if any.
	Load    *float64       `json:"load,omitempty"`
	Probes  uint64         `json:"probes"`
	Fails   uint64         `json:"failures"`
	Results []ResultStatus `json:"results,omitempty"`
	// Traffic is the data path's count for the backend (absent without a
	// data path or before the backend is in a published snapshot).
	Traffic *TrafficStatus `json:"traffic,omitempty"`
	// Overloaded: at its upper connection threshold, no new flows until it is below
	// the lower one; Connections is what the data path last counted.
	Overloaded  bool   `json:"overloaded,omitempty"`
	Connections uint64 `json:"connections"`
}

// ResultStatus is one recent health probe.
type ResultStatus struct {
	Time      time.Time `json:"time"`
	OK        bool      `json:"ok"`
	LatencyMS float64   `json:"latency_ms"`
	Err       string    `json:"error,omitempty"`
}

// ControllerStatus is the controller's own state.
type ControllerStatus struct {
	ConfigFile    string    `json:"config_file"`
	Generation    uint64    `json:"generation"`
	Published     time.Time `json:"published"`
	PublishError  string    `json:"publish_error,omitempty"`
	Publishes     uint64    `json:"publishes"`
	Reloads       uint64    `json:"reloads"`
	ReloadErrors  uint64    `json:"reload_errors"`
	LastReloadErr string    `json:"last_reload_error,omitempty"`
	// RuntimeChanges are the changes made through the API since the file was last read;
	// a reload drops them (runtime.go).
	RuntimeChanges []string `json:"runtime_changes,omitempty"`
}

// Services lists the services in config order.
func (c *Controller) Services() []ServiceStatus {
	fs := c.flowStats()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ServiceStatus, 0, len(c.services))
	for _, s := range c.services {
		st := s.status()
		st.Traffic = svcTraffic(fs[s.cfg.Name])
		out = append(out, st)
	}
	return out
}

func (s *svcState) status() ServiceStatus {
	st := ServiceStatus{Name: s.cfg.Name, VIP: s.cfg.VIP.String(), Port: s.cfg.Port, Protocol: s.cfg.Protocol,
		Method: s.cfg.Method, Scheduler: s.cfg.Scheduler, Backends: len(s.backends)}
	groupStatus(&st, &s.cfg)
	for _, b := range s.schedBackends() {
		if b.Up && b.Weight > 0 {
			st.Up++
		}
	}
	for i, b := range s.schedBackends() {
		if s.backends[i].fallback && b.Up && b.Weight > 0 {
			st.Fallback = true
		}
	}
	return st
}

// unknownBackends reports whether a backend of s that is not disabled has checks none of
// which has reported yet (health.StateUnknown).
func (s *svcState) unknownBackends() bool {
	for _, b := range s.backends {
		if !b.disabled && b.health == health.StateUnknown {
			return true
		}
	}
	return false
}

// Backends lists a service's backends with their state and recent probes.
func (c *Controller) Backends(service string) ([]BackendStatus, error) {
	var statuses map[string]health.Status
	if prober := c.proberOf(); prober != nil {
		statuses = map[string]health.Status{}
		for _, st := range prober.Statuses() {
			statuses[st.ID] = st
		}
	}
	fs := c.flowStats()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.byName[service]
	if s == nil {
		return nil, ErrNotFound
	}
	sfs := fs[service]
	sb := s.schedBackends()
	out := make([]BackendStatus, 0, len(s.backends))
	for i, b := range s.backends {
		bs := BackendStatus{
			ID: b.id, Name: b.name, Address: b.addr.String(), Port: b.port, Fallback: b.fallback,
			Weight: b.weight, ConfigWeight: b.cfgWeight, Disabled: b.disabled, Health: b.health.String(),
			Since: b.since, Reason: b.reason, Active: sb[i].Up && sb[i].Weight > 0,
			Traffic: beTraffic(sfs, b.id), Overloaded: b.overloaded, Connections: b.active,
		}
		if b.resolved {
			bs.NextHop = "ifindex " + strconv.Itoa(b.hop.IfIndex) + " mac " + net.HardwareAddr(b.hop.DstMAC[:]).String()
		} else {
			bs.NextHop = "unresolved: " + b.hopErr
		}
		if b.hasLoad {
			l := b.load
			bs.Load = &l
		}
		var checks []string
		for _, id := range b.checkIDs() {
			st, ok := statuses[id]
			if !ok {
				continue
			}
			checks = append(checks, st.Checker)
			bs.Probes, bs.Fails = bs.Probes+st.Probes, bs.Fails+st.Failures
			for _, r := range st.Results {
				bs.Results = append(bs.Results, ResultStatus{Time: r.Time, OK: r.OK,
					LatencyMS: float64(r.Latency.Microseconds()) / 1000, Err: r.Err})
			}
		}
		bs.Check = strings.Join(checks, "; ")
		slices.SortStableFunc(bs.Results, func(x, y ResultStatus) int { return x.Time.Compare(y.Time) })

		out = append(out, bs)
	}
	return out, nil
}

// Status returns the controller's own state.
func (c *Controller) Status() ControllerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ControllerStatus{ConfigFile: c.cfg.File(), Published: c.published, Publishes: c.pubCount,
		Reloads: c.reloads, ReloadErrors: c.reloadErr, LastReloadErr: c.lastErr,
		RuntimeChanges: append([]string(nil), c.runtime...)}
	if c.snap != nil {
		st.Generation = c.snap.Generation()
	}
	if c.pubErr != nil {
		st.PublishError = c.pubErr.Error()
	}
	return st
}

func beTrafficOf(b *dataplane.BackendStats) *TrafficStatus {
	return &TrafficStatus{Packets: b.Packets, Bytes: b.Bytes, NewFlows: b.NewFlows, OutPackets: b.OutPackets, OutBytes: b.OutBytes}
}
