package keepalived

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"
)

// keepalived's defaults for a virtual_server.
const (
	kaDelayLoop      = 60 * time.Second
	kaConnectTimeout = 5 * time.Second
)

// vsAddr is one VIP:port a virtual_server (or a group member) stands for.
type vsAddr struct {
	vip  netip.Addr
	port uint16
}

// schedulers maps lb_algo to xlb's nearest scheduler and, when it differs, how.
var schedulers = map[string]struct{ name, diff string }{
	"rr":    {"rr", ""},
	"wrr":   {"wrr", ""},
	"lc":    {"least-conn", "xlb's least-conn weighs connections by the backend weight (LVS wlc)"},
	"wlc":   {"least-conn", ""},
	"sh":    {"source-hash", ""},
	"mh":    {"source-hash", ""}, // LVS mh: Maglev on the client address, as xlb's source-hash
	"dh":    {"source-hash", "xlb has no destination hashing (for one VIP it sends everything to one server); using source-hash"},
	"lblc":  {"source-hash", "xlb has no locality-based least-connection; source-hash keeps a client on one server"},
	"lblcr": {"source-hash", "xlb has no locality-based least-connection with replication; source-hash keeps a client on one server"},
	"sed":   {"least-conn", "xlb has no shortest expected delay; least-conn is the nearest"},
	"nq":    {"least-conn", "xlb has no never-queue; least-conn is the nearest"},
	"fo":    {"wrr", "xlb has no weighted fail-over (all to the heaviest server): give the standby server weight 0 or make it the sorry_server"},
	"ovf":   {"least-conn", "xlb has no overflow-connection scheduler; least-conn is the nearest"},
	"twos":  {"random", "xlb has no two-choice random; weighted random is the nearest"},
}

var methods = map[string]string{"DR": "dr", "TUN": "tunnel", "NAT": "nat"}

// virtualServer translates one virtual_server into one service per VIP:port it stands for.
func (t *translator) virtualServer(vs *Node) {
	addrs, ok := t.vsAddrs(vs)
	if !ok {
		return
	}
	svc := outService{Protocol: "tcp", Method: "nat", Scheduler: "wrr"} // keepalived's defaults
	interval := kaDelayLoop
	var persistence, granularity, ops *Node
	var real []*Node
	for _, n := range vs.Children {
		switch n.Name {
		case "delay_loop":
			if d, ok := seconds(n.Arg(0)); ok && d > 0 {
				interval = d
			} else {
				t.drop(n, "%q is not a number of seconds", n.Arg(0))
			}
		case "lb_algo":
			m, ok := schedulers[n.Arg(0)]
			if !ok {
				t.drop(n, "unknown scheduler %q: using wrr", n.Arg(0))
				continue
			}
			svc.Scheduler = m.name
			if m.diff != "" {
				t.approx(n, "%s -> %s: %s", n.Arg(0), m.name, m.diff)
			}
		case "lb_kind":
			m, ok := methods[strings.ToUpper(n.Arg(0))]
			if !ok {
				t.drop(n, "unknown forwarding method %q: using nat", n.Arg(0))
				continue
			}
			svc.Method = m
		case "protocol":
			switch strings.ToUpper(n.Arg(0)) {
			case "TCP", "UDP":
				svc.Protocol = strings.ToLower(n.Arg(0))
			default:
				t.drop(vs, "xlb balances TCP and UDP only, not %s: virtual server left out", n.Arg(0))
				return
			}
		case "persistence_timeout":
			persistence = n
		case "persistence_granularity":
			granularity = n
		case "ops", "one_packet_scheduling":
			ops = n
		case "real_server":
			real = append(real, n)
		case "sorry_server", "sorry_server_inhibit", "sorry_server_lvs_method":
		default:
			t.vsOption(n)
		}
	}
	t.persistence(&svc, persistence, granularity, vs.Arg(0) == "group" && len(addrs) > 1)
	t.onePacket(&svc, ops)
	backends, health := t.realServers(vs, real, &svc, interval)
	if len(backends) == 0 {
		t.drop(vs, "no real_server could be translated: xlb needs at least one backend, virtual server left out")
		return
	}
	svc.Backends, svc.Health = backends, health
	for _, n := range vs.Children {
		if n.Name == "sorry_server" {
			t.sorryServer(n, &svc)
		} else if n.Name == "sorry_server_inhibit" || n.Name == "sorry_server_lvs_method" {
			t.approx(n, "xlb's fallback backends use the service's method")
		}
	}
	for _, a := range addrs {
		t.emit(vs, svc, a)
	}
	if svc.Method == "tunnel" {
		t.approx(vs, "lb_kind TUN: xlb writes the outer source address itself; tunnel_source set to the VIP, set it to this host's address if the backends check it")
	}
}

// vsOption reports the virtual_server options xlb has no use for.
func (t *translator) vsOption(n *Node) {
	switch n.Name {
	case "quorum", "quorum_up", "quorum_down", "hysteresis":
		t.drop(n, "xlb has no quorum: a service forwards while any backend is up (and uses its fallback when none is)")
	case "alpha":
		t.approx(n, "xlb starts every backend unknown (no new flows) and lets the first check decide")
	case "omega", "inhibit_on_failure":
		t.drop(n, "xlb takes a failed backend out of the tables (its existing flows are rescheduled)")
	case "ha_suspend":
		t.drop(n, "xlb checks backends on the backup host too")
	case "virtualhost":
		t.approx(n, "used as the Host header of the HTTP checks")
	case "retry", "connect_timeout":
		// Read by checker: the default of every check of the virtual server.
	case "delay_before_retry":
		t.approx(n, "xlb retries at the check interval, not after delay_before_retry")
	case "warmup":
		t.drop(n, "xlb staggers the first checks over the interval")
	default:
		t.drop(n, "unknown virtual_server keyword")
	}
}

// vsAddrs reads "virtual_server IP PORT", "virtual_server group NAME" and refuses fwmark.
func (t *translator) vsAddrs(vs *Node) ([]vsAddr, bool) {
	switch vs.Arg(0) {
	case "fwmark":
		t.drop(vs, "xlb services are VIP:port, not firewall marks: virtual server left out")
		return nil, false
	case "group":
		g, ok := t.groups[vs.Arg(1)]
		if !ok {
			t.drop(vs, "no virtual_server_group %q: virtual server left out", vs.Arg(1))
			return nil, false
		}
		var out []vsAddr
		for _, m := range g.Children {
			as, ok := t.groupMember(m)
			if ok {
				out = append(out, as...)
			}
		}
		return out, len(out) > 0
	}
	a, ok := t.addrPort(vs, vs.Arg(0), vs.Arg(1))
	if !ok {
		return nil, false
	}
	return []vsAddr{a}, true
}

// groupMember reads "IP PORT", "IP-LAST PORT" (a range of the last byte) or "fwmark N".
func (t *translator) groupMember(m *Node) ([]vsAddr, bool) {
	if m.Name == "fwmark" {
		t.drop(m, "xlb services are VIP:port, not firewall marks")
		return nil, false
	}
	first, last, isRange := strings.Cut(m.Name, "-")
	if !isRange {
		a, ok := t.addrPort(m, m.Name, m.Arg(0))
		return []vsAddr{a}, ok
	}
	a, ok := t.addrPort(m, first, m.Arg(0))
	if !ok {
		return nil, false
	}
	end, ok := uintArg(&Node{Args: []string{last}}, 0, 0, 255)
	b := a.vip.As16()
	if !a.vip.Is4() || !ok || uint64(b[15]) > end {
		t.drop(m, "bad address range %q (give IPv4 A.B.C.D-E)", m.Name)
		return nil, false
	}
	var out []vsAddr
	for i := uint64(b[15]); i <= end; i++ {
		b4 := a.vip.As4()
		b4[3] = byte(i)
		out = append(out, vsAddr{netip.AddrFrom4(b4), a.port})
	}
	return out, true
}

func (t *translator) addrPort(n *Node, addr, port string) (vsAddr, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		t.drop(n, "%q is not an IP address", addr)
		return vsAddr{}, false
	}
	if a = a.Unmap(); !usable(a) {
		t.drop(n, "%s is not a unicast address", a)
		return vsAddr{}, false
	}
	p, ok := uintArg(&Node{Args: []string{port}}, 0, 0, 65535)
	if !ok {
		t.drop(n, "%q is not a port", port)
		return vsAddr{}, false
	}
	return vsAddr{a, uint16(p)}, true
}

// usable reports a unicast address xlb accepts for a VIP or a backend.
func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// realServers translates the real_server blocks; when every backend has the same checks they
// go to the service's health block, else each backend gets its own.
func (t *translator) realServers(vs *Node, real []*Node, svc *outService, interval time.Duration) ([]outBackend, *outHealth) {
	var backends []outBackend
	var checks [][]*outHealth
	seen := map[string]*Node{}
	p, _ := uintArg(vs, 1, 0, 65535)
	vsPort := uint16(p)
	if vs.Arg(0) == "group" {
		vsPort = 0 // the members' ports: checks name the real server's port
	}
	for _, rs := range real {
		a, ok := t.addrPort(rs, rs.Arg(0), rs.Arg(1))
		if !ok {
			continue
		}
		b := outBackend{Address: a.vip.String(), Weight: 1}
		if svc.Method == "nat" {
			b.Port = a.port
		}
		key := b.Address
		if svc.Method == "nat" {
			key = netip.AddrPortFrom(a.vip, a.port).String()
		}
		if prev, dup := seen[key]; dup {
			t.drop(rs, "same backend as line %d (with %s, xlb sends to the service port)", prev.Pos.Line, svc.Method)
			continue
		}
		seen[key] = rs
		var rsChecks []*outHealth
		for _, n := range rs.Children {
			switch n.Name {
			case "weight":
				w, ok := uintArg(n, 0, 0, 65535)
				if !ok {
					t.drop(n, "%q is not a weight (0-65535)", n.Arg(0))
					continue
				}
				b.Weight = uint32(w)
			default:
				if hs := t.checker(vs, rs, n, vsPort, a.port, interval); hs != nil {
					rsChecks = append(rsChecks, hs...)
				} else if !isChecker(n.Name) {
					t.rsOption(n)
				}
			}
		}
		if (svc.Method == "dr" || svc.Method == "tunnel") && rs.Arg(1) != vs.Arg(1) && vs.Arg(0) != "group" {
			t.approx(rs, "with %s xlb sends to the service port %s, not %s", svc.Method, vs.Arg(1), rs.Arg(1))
		}
		backends = append(backends, b)
		checks = append(checks, rsChecks)
	}
	if len(backends) == 0 {
		return nil, nil
	}
	same := true
	for _, c := range checks[1:] {
		same = same && reflect.DeepEqual(c, checks[0])
	}
	if same {
		return backends, healthBlock(checks[0], interval)
	}
	for i := range backends {
		backends[i].Health = healthBlock(checks[i], interval)
	}
	// Every backend has its own block; the service's would only apply to none.
	return backends, &outHealth{Kind: "none"}
}

// healthBlock wraps a backend's checks: none means "kind: none" (keepalived forwards to a
// real server without checkers), one is the block itself, several go in checks.
func healthBlock(checks []*outHealth, interval time.Duration) *outHealth {
	switch len(checks) {
	case 0:
		return &outHealth{Kind: "none"}
	case 1:
		h := *checks[0]
		h.Interval = dur(interval)
		return &h
	}
	return &outHealth{Interval: dur(interval), Checks: checks}
}

func (t *translator) rsOption(n *Node) {
	switch n.Name {
	case "inhibit_on_failure":
		t.drop(n, "xlb takes a failed backend out of the tables (its existing flows are rescheduled)")
	case "notify_up", "notify_down":
		t.drop(n, "xlb runs no program on backend transitions: watch xlb_backend_up or the API")
	case "uthreshold", "lthreshold":
		t.drop(n, "xlb has no connection thresholds")
	case "retry", "connect_timeout":
		// Read by checker: the default of this real server's checks.
	case "delay_loop", "delay_before_retry", "warmup", "alpha":
		t.approx(n, "xlb times a backend's checks with the virtual server's delay_loop and its checks' own settings")
	default:
		t.drop(n, "unknown real_server keyword")
	}
}

// sorryServer makes the sorry server a fallback backend.
func (t *translator) sorryServer(n *Node, svc *outService) {
	a, ok := t.addrPort(n, n.Arg(0), n.Arg(1))
	if !ok {
		return
	}
	// keepalived does not check a sorry server.
	b := outBackend{Address: a.vip.String(), Weight: 1, Health: &outHealth{Kind: "none"}}
	if svc.Method == "nat" {
		b.Port = a.port
	}
	for _, x := range svc.Backends {
		if x.Address == b.Address && x.Port == b.Port {
			t.drop(n, "the sorry server is also a real server")
			return
		}
	}
	svc.Fallback = append(svc.Fallback, b)
	t.approx(n, "a fallback backend: it gets new flows while every backend is down")
}

// emit adds svc at VIP a: with the backends of a's family, unless the service exists
// already or a NAT backend of it serves another service (xlb maps NAT replies back to one).
func (t *translator) emit(vs *Node, svc outService, a vsAddr) {
	s := svc
	s.VIP, s.Port = a.vip.String(), a.port
	s.Name = fmt.Sprintf("%s-%s-%d", s.Protocol, a.vip, a.port)
	if s.Method == "tunnel" {
		s.TunnelSource = a.vip.String()
	}
	if a.port == 0 && s.Method == "nat" {
		t.drop(vs, "NAT needs a port (xlb rewrites it): %s port 0 left out", a.vip)
		return
	}
	if t.services[s.Name] {
		t.drop(vs, "%s %s port %d is defined twice: this one left out", s.Protocol, a.vip, a.port)
		return
	}
	s.Backends, s.Fallback = t.keepBackends(vs, &s, svc.Backends), t.keepBackends(vs, &s, svc.Fallback)
	if len(s.Backends) == 0 {
		t.drop(vs, "no backend left for %s port %d: left out", a.vip, a.port)
		return
	}
	t.services[s.Name] = true
	t.out.Services = append(t.out.Services, &s)
}

// keepBackends returns the backends s can use: of the VIP's family, and for NAT not used by
// another service.
func (t *translator) keepBackends(vs *Node, s *outService, list []outBackend) []outBackend {
	v4 := netip.MustParseAddr(s.VIP).Is4()
	var out []outBackend
	for _, b := range list {
		a := netip.MustParseAddr(b.Address)
		if a.Is4() != v4 {
			t.drop(vs, "backend %s is not of the family of VIP %s: left out of that service", b.Address, s.VIP)
			continue
		}
		if s.Method == "nat" {
			key := s.Protocol + "/" + netip.AddrPortFrom(a, b.Port).String()
			if other, dup := t.natTargets[key]; dup && other != s.Name {
				t.drop(vs, "NAT backend %s already serves %s (xlb maps its replies back to one VIP): left out", key, other)
				continue
			}
			t.natTargets[key] = s.Name
		}
		// xlb's default name ("[addr]:port", "::2") would not be a valid name.
		switch {
		case !v4 && s.Method == "nat":
			b.Name = fmt.Sprintf("v6-%s-%d", a, b.Port)
		case !v4 && strings.HasPrefix(b.Address, ":"):
			b.Name = "v6-" + b.Address
		}
		out = append(out, b)
	}
	return out
}

// persistence translates persistence_timeout (seconds) and persistence_granularity (a
// netmask, or a prefix length for IPv6) into a persistence block; the scheduler stays.
func (t *translator) persistence(svc *outService, timeout, granularity *Node, group bool) {
	if timeout == nil {
		if granularity != nil {
			t.drop(granularity, "without persistence_timeout there is no persistence to make coarser")
		}
		return
	}
	d, ok := seconds(timeout.Arg(0))
	if !ok || d < time.Second || d > 24*time.Hour {
		t.drop(timeout, "%q is not a timeout of 1..86400 seconds: no persistence", timeout.Arg(0))
		return
	}
	p := &outPersist{Timeout: fmt.Sprintf("%ds", int(d.Seconds()))}
	if granularity != nil {
		if bits, ok := netmaskBits(granularity.Arg(0)); ok {
			p.Prefix = bits
		} else {
			t.drop(granularity, "%q is neither a netmask nor a prefix length: one client address per backend", granularity.Arg(0))
		}
	}
	svc.Persistence = p
	if group {
		t.approx(timeout, "each member of the group is a service of its own, with its own persistence; "+
			"where the members are every VIP with every port, one service with vips: and ports: shares it")
	}
}

// onePacket translates ops (one-packet scheduling): UDP only.
func (t *translator) onePacket(svc *outService, ops *Node) {
	switch {
	case ops == nil:
	case svc.Protocol == "udp":
		svc.OnePacket = true
	default:
		t.drop(ops, "one-packet scheduling is for UDP: a TCP connection keeps its backend")
	}
}

// netmaskBits reads a netmask (255.255.255.0) or a prefix length (24, for IPv6).
func netmaskBits(s string) (int, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		m := a.As4()
		bits, ones := 0, true
		for _, b := range m {
			for i := 7; i >= 0; i-- {
				set := b>>i&1 == 1
				if set && !ones {
					return 0, false // not contiguous
				}
				if set {
					bits++
				}
				ones = set
			}
		}
		return bits, bits > 0
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n >= 1 && n <= 128 && fmt.Sprint(n) == s {
		return n, true
	}
	return 0, false
}
