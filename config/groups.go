package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// PortRange is an inclusive range of ports, written "443" or "8000-8099".
type PortRange struct {
	Lo, Hi uint16
}

// Len returns the number of ports in r.
func (r PortRange) Len() int { return int(r.Hi) - int(r.Lo) + 1 }

// String writes r as "443" or "8000-8099".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// MarshalText writes r as String does.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "443" or "8000-8099" (1..65535, low end first).
func (r *PortRange) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	lo, hi, isRange := strings.Cut(s, "-")
	parse := func(v string) (uint16, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%w: %q is not a port 1..65535 or a range like 8000-8099", ErrValue, s)
		}
		return uint16(n), nil
	}
	l, err := parse(lo)
	if err != nil {
		return err
	}
	h := l
	if isRange {
		if h, err = parse(hi); err != nil {
			return err
		}
		if h < l {
			return fmt.Errorf("%w: range %q runs backwards", ErrValue, s)
		}
	}
	*r = PortRange{l, h}
	return nil
}

// Persistence sends every connection of a client prefix to the same
// backend while the client has been seen within Timeout (IPVS -p and -M,
// keepalived's persistence_timeout and persistence_granularity), on every
// worker core; only its backend going down or being removed moves it. A
// drained backend (weight 0) keeps its persistent clients.
type Persistence struct {
	// Timeout is how long a client's backend is remembered after its last
	// connection (1s..24h). Default 300s, as ipvsadm -p.
	Timeout time.Duration `yaml:"timeout"`
	// Prefix is the length of the client prefix that shares a backend, in
	// the service's address family: default 32 for IPv4 (one client
	// address), 64 for IPv6.
	Prefix int `yaml:"prefix"`

	pos pos
}

func (p *Persistence) setPos(q pos) { p.pos = q }

// DefaultPersistenceTimeout is ipvsadm's default persistence timeout.
const DefaultPersistenceTimeout = 300 * time.Second

// ConnTable sizes the workers' connection tables and sets their idle
// timeouts (ipvsadm --set). A restart applies a change.
type ConnTable struct {
	// Size is the number of entries of each worker's table (56 bytes each).
	// Default 1048576.
	Size int `yaml:"size"`
	// PersistenceSize is the number of client prefixes the persistence
	// table (one, shared by every worker) remembers (32 bytes each).
	// Default 65536.
	PersistenceSize int          `yaml:"persistence_size"`
	Timeouts        ConnTimeouts `yaml:"timeouts"`
	pos             pos
}

func (t *ConnTable) setPos(p pos) { t.pos = p }

// Equal reports whether two conn_table sections set the same, wherever in
// their files they are.
func (t ConnTable) Equal(o ConnTable) bool {
	return t.Size == o.Size && t.PersistenceSize == o.PersistenceSize && t.Timeouts.Sched() == o.Timeouts.Sched()
}

// ConnTimeouts are the idle timeouts of connection-table entries; unset
// ones keep LVS's defaults (tcp 900s, tcp_fin 120s, tcp_syn 60s, udp 300s,
// other 60s).
type ConnTimeouts struct {
	TCP    time.Duration `yaml:"tcp"`     // established TCP
	TCPFin time.Duration `yaml:"tcp_fin"` // TCP after the client's FIN
	TCPSyn time.Duration `yaml:"tcp_syn"` // TCP before the handshake's ACK
	UDP    time.Duration `yaml:"udp"`
	Other  time.Duration `yaml:"other"` // ICMP and the rest

	pos pos
}

func (t *ConnTimeouts) setPos(p pos) { t.pos = p }

// Sched returns the timeouts as the scheduler takes them (zero: default).
func (t ConnTimeouts) Sched() sched.Timeouts {
	return sched.Timeouts{TCPEstablished: t.TCP, TCPFinWait: t.TCPFin, TCPSynRecv: t.TCPSyn, UDP: t.UDP, Other: t.Other}
}

// MaxServiceTuples is the most (VIP, port) pairs all services together
// may listen on: the XDP program's services map holds that many.
const MaxServiceTuples = 4096

// Frontends returns the (VIP, port range) pairs the service listens on:
// every VIP of VIPs (or VIP) with every range of Ports (or Port; 0 = all).
func (s *Service) Frontends() (vips []netip.Addr, ports []PortRange) {
	vips, ports = s.VIPs, s.Ports
	if len(vips) == 0 {
		vips = []netip.Addr{s.VIP}
	}
	if len(ports) == 0 {
		ports = []PortRange{{s.Port, s.Port}}
	}
	return vips, ports
}

// IsGroup reports whether the service lists several VIPs or ports.
func (s *Service) IsGroup() bool {
	vips, ports := s.Frontends()
	return len(vips) > 1 || len(ports) > 1 || ports[0].Lo != ports[0].Hi
}

// normalizeGroup fills VIP and Port from the lists (their first entries) and
// the persistence defaults.
func (s *Service) normalizeGroup() {
	if !s.VIP.IsValid() && len(s.VIPs) > 0 {
		s.VIP = s.VIPs[0]
	}
	if s.Port == 0 && len(s.Ports) > 0 && !s.pos.has("port") {
		s.Port = s.Ports[0].Lo
	}
	if p := s.Persistence; p != nil {
		if p.Timeout == 0 && !p.pos.has("timeout") {
			p.Timeout = DefaultPersistenceTimeout
		}
		if p.Prefix == 0 && !p.pos.has("prefix") {
			p.Prefix = 32
			if s.VIP.Is6() {
				p.Prefix = 64
			}
		}
	}
}

// SchedPersistence returns the service's persistence as the scheduler
// takes it (the zero value when it has none).
func (s *Service) SchedPersistence() sched.Persistence {
	if s.Persistence == nil {
		return sched.Persistence{}
	}
	p := sched.Persistence{Timeout: s.Persistence.Timeout}
	if s.VIP.Is6() {
		p.Prefix6 = s.Persistence.Prefix
	} else {
		p.Prefix4 = s.Persistence.Prefix
	}
	return p
}

// validateGroup checks vips, ports, persistence, one_packet and slow_start
// of service s (at path p).
func (s *Service) validateGroup(e *errs, p string) {
	// vip and port may stand beside vips and ports (as Marshal writes them: the first
	// pair, for listings) only when they are among them.
	if len(s.VIPs) > 0 && s.VIP.IsValid() && !slices.Contains(s.VIPs, s.VIP) {
		e.add(s.pos.at("vip"), p+".vip", ErrValue, "vip %s is not one of vips (set vips alone)", s.VIP)
	}
	if len(s.Ports) > 0 && !slices.ContainsFunc(s.Ports, func(r PortRange) bool { return r.Lo <= s.Port && s.Port <= r.Hi }) {
		e.add(s.pos.at("port"), p+".port", ErrValue, "port %d is not in ports (set ports alone)", s.Port)
	}
	if s.pos.has("vips") && len(s.VIPs) == 0 {
		e.add(s.pos.at("vips"), p+".vips", ErrMissing, "an empty list: give at least one VIP")
	}
	if s.pos.has("ports") && len(s.Ports) == 0 {
		e.add(s.pos.at("ports"), p+".ports", ErrMissing, "an empty list: give at least one port or range")
	}
	seen := map[netip.Addr]bool{}
	for i, v := range s.VIPs {
		vp := fmt.Sprintf("%s.vips[%d]", p, i)
		switch {
		case !usableUnicast(v):
			e.add(s.pos.at("vips"), vp, ErrValue, "%s is not a usable unicast address", v)
		case seen[v]:
			e.add(s.pos.at("vips"), vp, ErrDuplicate, "%s listed twice", v)
		case v.Is4() != s.VIPs[0].Is4():
			e.add(s.pos.at("vips"), vp, ErrValue, "%s and %s are of different address families (the backends serve one)", v, s.VIPs[0])
		}
		seen[v] = true
	}
	for i, r := range s.Ports {
		for j := range i {
			if o := s.Ports[j]; r.Lo <= o.Hi && o.Lo <= r.Hi {
				e.add(s.pos.at("ports"), fmt.Sprintf("%s.ports[%d]", p, i), ErrDuplicate, "%s overlaps %s", r, o)
				break
			}
		}
	}
	if s.Method == MethodNAT && s.IsGroup() {
		e.add(s.pos.at("method"), p+".method", ErrValue,
			"method nat needs one VIP and one port: its replies are mapped back to the client's VIP and port without state")
	}
	if s.IsGroup() && (!s.ACL.IsZero() || s.Limits.NewFlows != nil || s.Limits.SourceNewFlows != nil) {
		e.add(s.pos.at("acl"), p+".acl", ErrValue, "acl and limits are enforced per (VIP, port) in the XDP program: not available on a service with several vips or ports yet")
	}
	if s.OnePacket && s.Protocol != UDP {
		e.add(s.pos.at("one_packet"), p+".one_packet", ErrValue, "one_packet is for protocol udp (a TCP connection needs its backend kept)")
	}
	if s.SlowStart < 0 || s.SlowStart > time.Hour || (s.SlowStart > 0 && s.SlowStart < 100*time.Millisecond) {
		e.add(s.pos.at("slow_start"), p+".slow_start", ErrValue, "%v not in 100ms..1h (0: off)", s.SlowStart)
	}
	if ps := s.Persistence; ps != nil {
		pp := ps.pos
		if pp.line == 0 {
			pp.line = s.pos.at("persistence")
		}
		if ps.Timeout < time.Second || ps.Timeout > 24*time.Hour {
			e.add(pp.at("timeout"), p+".persistence.timeout", ErrValue, "%v not in 1s..24h", ps.Timeout)
		}
		maxBits := 32
		if s.VIP.Is6() {
			maxBits = 128
		}
		if ps.Prefix < 1 || ps.Prefix > maxBits {
			e.add(pp.at("prefix"), p+".persistence.prefix", ErrValue, "/%d not in 1..%d (the client prefix in the VIP's address family)", ps.Prefix, maxBits)
		}
	}
}

// frontendKey is one (VIP, port, protocol) a service listens on.
type frontendKey struct {
	vip   netip.Addr
	port  uint16
	proto Protocol
}

// validateFrontends refuses more (VIP, port) pairs than the XDP program
// holds, and a pair two services claim when one of them is a group (plain
// duplicates are reported by validateServices).
func (c *Config) validateFrontends(e *errs) {
	total := 0
	for i := range c.Services {
		vips, ports := c.Services[i].Frontends()
		for _, r := range ports {
			total += len(vips) * r.Len()
		}
	}
	if total > MaxServiceTuples {
		e.add(c.pos.at("services"), "services", ErrTooBig, "%d (VIP, port) pairs in all, at most %d (the XDP program's services map)", total, MaxServiceTuples)
		return
	}
	owner := map[frontendKey]int{}
	for i := range c.Services {
		s := &c.Services[i]
		vips, ports := s.Frontends()
		for _, v := range vips {
			for _, r := range ports {
				for port := int(r.Lo); port <= int(r.Hi); port++ {
					k := frontendKey{v, uint16(port), s.Protocol}
					if j, dup := owner[k]; dup && j != i && (s.IsGroup() || c.Services[j].IsGroup()) {
						e.add(s.pos.line, fmt.Sprintf("services[%d]", i), ErrDuplicate, "%s/%s is also service %q's",
							s.Protocol, netip.AddrPortFrom(v, uint16(port)), c.Services[j].Name)
						goto next
					}
					owner[k] = i
				}
			}
		}
	next:
	}
}

// validateConnTable checks the conn_table section.
func (c *Config) validateConnTable(e *errs) {
	t := &c.ConnTable
	if t.Size != 0 && (t.Size < 1024 || t.Size > sched.MaxCapacity) {
		e.add(t.pos.at("size"), "conn_table.size", ErrValue, "%d not in 1024..%d", t.Size, sched.MaxCapacity)
	}
	if t.PersistenceSize != 0 && (t.PersistenceSize < 64 || t.PersistenceSize > sched.MaxPersistSize) {
		e.add(t.pos.at("persistence_size"), "conn_table.persistence_size", ErrValue, "%d not in 64..%d", t.PersistenceSize, sched.MaxPersistSize)
	}
	to := &t.Timeouts
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"tcp", to.TCP}, {"tcp_fin", to.TCPFin}, {"tcp_syn", to.TCPSyn}, {"udp", to.UDP}, {"other", to.Other}} {
		if f.v < 0 || f.v > 24*time.Hour || (f.v == 0 && to.pos.has(f.name)) || (f.v > 0 && f.v < time.Second) {
			line := to.pos.at(f.name)
			if line == 0 {
				line = t.pos.at("timeouts")
			}
			e.add(line, "conn_table.timeouts."+f.name, ErrValue, "%v not in 1s..24h", f.v)
		}
	}
}
