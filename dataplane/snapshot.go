package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// Method is how a service forwards a packet to its backend (defined in encap, which
// implements the three rewrites).
type Method = encap.Method

// The forwarding methods.
const (
	// MethodDR rewrites only the MAC addresses; the backend holds the VIP on its loopback.
	MethodDR = encap.MethodDR
	// MethodTunnel prepends an outer IPv4 or IPv6 header (IPIP, IP6IP6, IPv4-in-IPv6).
	MethodTunnel = encap.MethodTunnel
	// MethodNAT rewrites the destination address and port; replies come back through the LB.
	MethodNAT = encap.MethodNAT
)

// Errors returned by NewSnapshot, wrapped with the service and backend they are about.
var (
	// ErrBadMethod is encap.ErrBadMethod: the method is not dr, tunnel or nat.
	ErrBadMethod     = encap.ErrBadMethod
	ErrBadService    = errors.New("invalid service")
	ErrDupService    = errors.New("duplicate service")
	ErrBadBackend    = errors.New("invalid backend")
	ErrNATConflict   = errors.New("nat backend belongs to two services")
	ErrBadRoute      = errors.New("invalid route")
	ErrTargetsLength = errors.New("forwarding targets do not match the scheduler's backends")
)

// NextHop is where a packet leaves the LB: the egress interface, the MAC addresses to write
// and the egress MTU. Control fills it from the kernel's routing and neighbour tables (see
// ResolveNextHop); IfIndex 0 means "not resolved yet" and packets for it are dropped and
// counted as no_route.
type NextHop struct {
	IfIndex int     // egress interface index; 0 = unresolved
	SrcMAC  [6]byte // the egress interface's own MAC
	DstMAC  [6]byte // the next hop's MAC (the backend's, or the gateway's)
	MTU     int     // egress MTU; 0 means 1500
}

// Target is the forwarding data of one backend, parallel to the scheduler's backends.
type Target struct {
	// Addr is the backend's address: the next hop's key for dr, the outer destination for
	// tunnel, the new destination for nat.
	Addr netip.Addr
	// Port is the nat backend port; 0 keeps the client's destination port. Must be 0 unless
	// the method is nat.
	Port uint16
	Hop  NextHop
	// ServerID is the backend's QUIC-LB server ID (ServiceSpec.QUIC), ServerIDLen bytes, or
	// nil for a backend that issues none.
	ServerID []byte
}

// ServiceSpec describes one service of a snapshot.
type ServiceSpec struct {
	Name   string
	VIP    netip.Addr
	Port   uint16 // 0 = all ports
	Proto  uint8  // encap.ProtoTCP or encap.ProtoUDP
	Method Method
	// TunnelSource is the outer source of the tunnel method: a single address (/32, /128) or
	// a prefix whose host bits are filled from the flow hash, so the backend's NIC spreads
	// tunnelled flows over its queues. Its family picks the outer header: IPv4 (IPIP, 6in4)
	// or IPv6 (IP6IP6, IPv4-in-IPv6); backends must be of the same family.
	TunnelSource netip.Prefix
	// Encap is the tunnel method's encapsulation (IPIP when zero: GUE and FOU add a UDP
	// header whose source port follows the flow) and EncapPort its UDP destination port (0:
	// encap.DefaultGUEPort). Only for the tunnel method.
	Encap     encap.TunnelEncap
	EncapPort uint16
	// QUIC, for a UDP service, routes packets by the server ID in their QUIC destination
	// connection ID (QUIC-LB) to the backend whose Target.ServerID it is, while that backend
	// is up; other packets take the scheduler's 4-tuple path. Its server IDs have at most 8
	// bytes. Nil: no QUIC routing.
	QUIC *encap.QUICLB
	// QUICPrevious are configurations still routed during a rotation (new keys or lengths):
	// each with a config rotation codepoint of its own and the current one's server ID
	// length (the backends' server IDs serve them all).
	QUICPrevious []*encap.QUICLB
	// Sched is the service's scheduler snapshot; Targets[i] forwards to its backend i.
	Sched   *sched.Service
	Targets []Target
	// Policy is the service's ACL and new-flow limits, enforced in the XDP program.
	Policy Policy
	// VIPs and Ports, when set, make the service a group: it listens on every VIP (VIP and
	// these) with every port of Ports (instead of Port), with one scheduler, one connection
	// table state and one persistence. Not with method nat. At most MaxFrontends pairs
	// over all services.
	VIPs  []netip.Addr
	Ports []PortRange
}

// Route sends NAT replies (whose destination is a client) to a next hop. NewSnapshot keeps
// host routes (/32, /128) in a hash table and the others in longest-prefix-first order.
type Route struct {
	Prefix netip.Prefix
	Hop    NextHop
}

type target struct {
	addr [16]byte
	ip   netip.Addr
	port uint16
	v6   bool
	hop  NextHop
	tun  encap.Tunnel // tunnel method, when the next hop is resolved
	// flow is the target's index among all the snapshot's targets, services in order: its
	// entry in a worker's per-backend counters (flowCounts.be).
	flow int32
}

// natPort is the source port of the backend's replies: its own port, or the service's when
// it keeps the client's destination port (0 for an all-ports service: any port).
func (t *target) natPort(svcPort uint16) uint16 {
	if t.port != 0 {
		return t.port
	}
	return svcPort
}

type service struct {
	spec    ServiceSpec
	vip     [16]byte
	v6      bool
	targets []target
	vipIP   netip.Addr
	tunV6   bool         // tunnel method: the outer header is IPv6
	vips    []netip.Addr // every VIP, vipIP first
	ports   []PortRange  // every port range ({Port, Port} for a plain service)
	quic    *quicRoutes  // ServiceSpec.QUIC: server ID -> target; nil without
}

type route struct {
	addr [16]byte
	bits int
	v6   bool
	hop  NextHop
}

// Snapshot is the immutable forwarding state that control publishes and workers load once
// per batch: the services, their exact-port/all-port lookup, the stateless NAT return lookup
// and the routes back to clients. Build it with NewSnapshot; never modify it afterwards.
type Snapshot struct {
	gen      uint64
	services []service
	quic     bool  // some service routes QUIC by connection ID (service.quic)
	byVIP    table // (VIP, port, proto) -> service index
	byNAT    table // (backend, port, proto) -> index into nats
	nats     []natRef
	byFrag   table   // (VIP, proto) -> the VIP's only service of that protocol, for fragments
	given    []Route // the routes as given, for Routes
	hosts    table   // host route (addr) -> routes index
	routes   []route
	prefixes []int // indexes into routes of the non-host routes, longest prefix first
}

var snapshotGen atomic.Uint64

func addr16(a netip.Addr) (b [16]byte, v6 bool) {
	if a.Is4() || a.Is4In6() {
		v4 := a.Unmap().As4()
		copy(b[:4], v4[:])
		return b, false
	}
	return a.As16(), true
}

func checkHop(h NextHop, v6 bool) error {
	if h.IfIndex < 0 {
		return fmt.Errorf("negative interface index %d", h.IfIndex)
	}
	min := 68
	if v6 {
		min = 1280
	}
	if h.MTU != 0 && (h.MTU < min || h.MTU > 65535) {
		return fmt.Errorf("mtu %d out of range [%d, 65535]", h.MTU, min)
	}
	if h.IfIndex > 0 && (h.DstMAC == [6]byte{} || h.SrcMAC == [6]byte{}) {
		return fmt.Errorf("interface %d without both MAC addresses", h.IfIndex)
	}
	return nil
}

// NewSnapshot validates services and routes and builds a snapshot. Errors name the service
// (and backend) at fault and wrap one of the Err* sentinels.
func NewSnapshot(services []ServiceSpec, routes []Route) (*Snapshot, error) {
	nFront, nNAT := 0, 0
	for i := range services {
		sp := &services[i]
		nFront += frontends(sp)
		if sp.Method == MethodNAT {
			nNAT += len(sp.Targets)
		}
	}
	if nFront > MaxFrontends {
		return nil, fmt.Errorf("%w: %d (vip, port) pairs in all, at most %d", ErrBadService, nFront, MaxFrontends)
	}
	s := &Snapshot{
		gen:      snapshotGen.Add(1),
		services: make([]service, 0, len(services)),
		byVIP:    newTable(nFront),
	}
	names := make(map[string]bool, len(services))
	s.byNAT = newTable(nNAT)
	nBackends := 0
	for i := range services {
		sv, err := buildService(&services[i])
		if err != nil {
			return nil, err
		}
		if names[sv.spec.Name] {
			return nil, fmt.Errorf("service %q: %w: name used twice", sv.spec.Name, ErrDupService)
		}
		names[sv.spec.Name] = true
		if err := s.indexFrontends(&sv, i); err != nil {
			return nil, err
		}
		if sv.spec.Method == MethodNAT {
			for j, t := range sv.targets {
				k := tupleKey{addr: t.addr, port: t.natPort(sv.spec.Port), proto: sv.spec.Proto, v6: t.v6}
				if s.byNAT.insert(k, len(s.nats)) {
					s.nats = append(s.nats, natRef{svc: int32(i), target: int32(j)})
				} else {
					if o := int(s.nats[s.byNAT.get(&k)].svc); o != i {
						return nil, fmt.Errorf("service %q backend %d (%s port %d): %w %q",
							sv.spec.Name, j, sv.spec.Targets[j].Addr, t.port, ErrNATConflict,
							s.services[o].spec.Name)
					}
					return nil, fmt.Errorf("service %q backend %d (%s port %d): %w: listed twice",
						sv.spec.Name, j, sv.spec.Targets[j].Addr, t.port, ErrBadBackend)
				}
			}
		}
		for j := range sv.targets {
			sv.targets[j].flow = int32(nBackends + j)
		}
		nBackends += len(sv.targets)
		s.quic = s.quic || sv.quic != nil
		s.services = append(s.services, sv)
	}
	s.buildFragments()
	if err := s.buildRoutes(routes); err != nil {
		return nil, err
	}
	return s, nil
}

// buildFragments indexes, per (VIP, protocol), the one service a fragment can belong to: IP
// fragments carry no ports in their flow key (every fragment of a datagram must hash alike),
// so a fragment finds an all-ports service by the ordinary lookup, or else the VIP's only
// service of its protocol. A VIP with several port services of one protocol gets none, and
// its fragments are dropped as no_service.
func (s *Snapshot) buildFragments() {
	count := map[tupleKey]int{}
	for _, sv := range s.services {
		for _, ip := range sv.vips {
			a, _ := addr16(ip)
			count[tupleKey{addr: a, proto: sv.spec.Proto, v6: sv.v6}]++
		}
	}
	s.byFrag = newTable(len(count))
	for i, sv := range s.services {
		for _, ip := range sv.vips {
			a, _ := addr16(ip)
			if k := (tupleKey{addr: a, proto: sv.spec.Proto, v6: sv.v6}); count[k] == 1 {
				s.byFrag.insert(k, i)
			}
		}
	}
}

func buildService(sp *ServiceSpec) (service, error) {
	sv := service{spec: *sp}
	sv.spec.Targets = slices.Clone(sp.Targets)
	if err := sv.spec.Policy.own(); err != nil {
		return service{}, fmt.Errorf("service %q: %w", sp.Name, err)
	}
	bad := func(format string, a ...any) (service, error) {
		return service{}, fmt.Errorf("service %q: %w: %s", sp.Name, ErrBadService, fmt.Sprintf(format, a...))
	}
	if sp.Name == "" {
		return bad("empty name")
	}
	if !sp.VIP.IsValid() || sp.VIP.IsUnspecified() {
		return bad("vip %v is not a usable address", sp.VIP)
	}
	if sp.Proto != encap.ProtoTCP && sp.Proto != encap.ProtoUDP {
		return bad("protocol %d (want tcp %d or udp %d)", sp.Proto, encap.ProtoTCP, encap.ProtoUDP)
	}
	switch sp.Method {
	case MethodDR, MethodTunnel, MethodNAT:
	default:
		return service{}, fmt.Errorf("service %q: %w: %d", sp.Name, ErrBadMethod, sp.Method)
	}
	if sp.Sched == nil {
		return bad("no scheduler snapshot")
	}
	if n := sp.Sched.Len(); n != len(sp.Targets) {
		return service{}, fmt.Errorf("service %q: %w: %d targets for %d backends",
			sp.Name, ErrTargetsLength, len(sp.Targets), n)
	}
	sv.vip, sv.v6 = addr16(sp.VIP)
	sv.vipIP = sp.VIP.Unmap()
	if err := checkGroup(sp, &sv); err != nil {
		return service{}, err
	}
	if sp.Method == MethodTunnel {
		if !sp.TunnelSource.IsValid() {
			return bad("tunnel method without tunnel source")
		}
		sv.tunV6 = sp.TunnelSource.Addr().Unmap().Is6()
		if _, err := sp.Encap.MarshalText(); err != nil {
			return bad("%v", err)
		}
	} else if sp.TunnelSource.IsValid() {
		return bad("tunnel source set for method %v", sp.Method)
	} else if sp.Encap != encap.EncapIPIP || sp.EncapPort != 0 {
		return bad("encap %v port %d set for method %v", sp.Encap, sp.EncapPort, sp.Method)
	}
	sv.targets = make([]target, len(sp.Targets))
	for j, t := range sp.Targets {
		badT := func(format string, a ...any) (service, error) {
			return service{}, fmt.Errorf("service %q backend %d (%v): %w: %s",
				sp.Name, j, t.Addr, ErrBadBackend, fmt.Sprintf(format, a...))
		}
		// wrapT keeps err in the chain, so errors.Is sees its sentinel too.
		wrapT := func(what string, err error) (service, error) {
			return service{}, fmt.Errorf("service %q backend %d (%v): %w: %s%w",
				sp.Name, j, t.Addr, ErrBadBackend, what, err)
		}
		if !t.Addr.IsValid() || t.Addr.IsUnspecified() {
			return badT("not a usable address")
		}
		a, v6 := addr16(t.Addr)
		switch sp.Method {
		case MethodDR, MethodNAT:
			if v6 != sv.v6 {
				return badT("address family differs from the vip %v", sp.VIP)
			}
		case MethodTunnel:
			if v6 != sv.tunV6 {
				return badT("address family differs from the tunnel source %v", sp.TunnelSource)
			}
		}
		if t.Port != 0 && sp.Method != MethodNAT {
			return badT("port %d set for method %v", t.Port, sp.Method)
		}
		if t.Port != 0 && sp.Port == 0 {
			return badT("port %d set for an all-ports service", t.Port)
		}
		if err := checkHop(t.Hop, v6); err != nil {
			return wrapT("", err)
		}
		tg := target{addr: a, ip: t.Addr.Unmap(), port: t.Port, v6: v6, hop: t.Hop}
		if tg.hop.MTU == 0 {
			tg.hop.MTU = 1500
		}
		if sp.Method == MethodTunnel && t.Hop.IfIndex > 0 {
			tun, err := encap.NewTunnel(encap.TunnelConfig{DstMAC: t.Hop.DstMAC, SrcMAC: t.Hop.SrcMAC,
				Backend: tg.ip, Source: sp.TunnelSource, MTU: tg.hop.MTU, Encap: sp.Encap, Port: sp.EncapPort})
			if err != nil {
				return wrapT("tunnel: ", err)
			}
			tg.tun = tun
		}
		sv.targets[j] = tg
	}
	if err := sv.buildQUIC(); err != nil {
		return service{}, fmt.Errorf("service %q: %w: %w", sp.Name, ErrBadService, err)
	}
	return sv, nil
}

func (s *Snapshot) buildRoutes(routes []Route) error {
	s.given = slices.Clone(routes)
	s.routes = make([]route, 0, len(routes))
	nHost := 0
	for _, r := range routes {
		if r.Prefix.IsSingleIP() {
			nHost++
		}
	}
	s.hosts = newTable(nHost)
	for i, r := range routes {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("route %d: %w: invalid prefix", i, ErrBadRoute)
		}
		p := r.Prefix.Masked()
		a, v6 := addr16(p.Addr())
		bits := p.Bits()
		if p.Addr().Is4In6() {
			bits -= 96
		}
		if err := checkHop(r.Hop, v6); err != nil {
			return fmt.Errorf("route %v: %w: %w", p, ErrBadRoute, err)
		}
		hop := r.Hop
		if hop.MTU == 0 {
			hop.MTU = 1500
		}
		s.routes = append(s.routes, route{addr: a, bits: bits, v6: v6, hop: hop})
		idx := len(s.routes) - 1
		if p.IsSingleIP() {
			if !s.hosts.insert(tupleKey{addr: a, v6: v6}, idx) {
				return fmt.Errorf("route %v: %w: listed twice", p, ErrBadRoute)
			}
			continue
		}
		s.prefixes = append(s.prefixes, idx)
	}
	slices.SortStableFunc(s.prefixes, func(a, b int) int { return s.routes[b].bits - s.routes[a].bits })
	return nil
}

// Routes returns the routes the snapshot was built with (a copy).
func (s *Snapshot) Routes() []Route { return slices.Clone(s.given) }

// Generation is a number that grows with every snapshot built in this process.
func (s *Snapshot) Generation() uint64 { return s.gen }

// NumServices returns the number of services.
func (s *Snapshot) NumServices() int { return len(s.services) }

// Service returns service i's spec (a copy; its Targets slice is shared and must not be
// modified).
func (s *Snapshot) Service(i int) ServiceSpec { return s.services[i].spec }

// lookup returns the index of the service for (dst, port, proto): an exact-port service
// first, then an all-ports one, then, for a key without ports (a fragment), the VIP's only
// service of that protocol; -1 if none.
func (s *Snapshot) lookup(k *encap.FlowKey) int {
	t := tupleKey{addr: k.Dst, port: k.DstPort, proto: k.Proto, v6: k.V6}
	if i := s.byVIP.get(&t); i >= 0 {
		return i
	}
	t.port = 0
	if i := s.byVIP.get(&t); i >= 0 || k.DstPort != 0 || k.SrcPort != 0 {
		return i
	}
	return s.byFrag.get(&t) // a fragment (or a portless packet): the VIP's only service
}

// lookupNAT returns the index of the nat service whose backend sent k (a reply: the source is
// the backend) and that backend's position, exact backend port first, then a port-keeping
// backend; -1, -1 if none.
func (s *Snapshot) lookupNAT(k *encap.FlowKey) (si, bi int) {
	if len(s.byNAT.slots) == 0 {
		return -1, -1
	}
	t := tupleKey{addr: k.Src, port: k.SrcPort, proto: k.Proto, v6: k.V6}
	i := s.byNAT.get(&t)
	if i < 0 {
		t.port = 0
		if i = s.byNAT.get(&t); i < 0 {
			return -1, -1
		}
	}
	r := &s.nats[i]
	return int(r.svc), int(r.target)
}

// natRef names a NAT backend: the service's snapshot index and the target's position.
type natRef struct{ svc, target int32 }

// route returns the next hop toward dst, or nil.
func (s *Snapshot) route(dst *[16]byte, v6 bool) *NextHop {
	if i := s.hosts.get(&tupleKey{addr: *dst, v6: v6}); i >= 0 {
		return &s.routes[i].hop
	}
	for _, i := range s.prefixes {
		r := &s.routes[i]
		if r.v6 == v6 && prefixMatch(dst, &r.addr, r.bits) {
			return &r.hop
		}
	}
	return nil
}

func prefixMatch(a, p *[16]byte, bits int) bool {
	n := bits / 8
	for i := 0; i < n; i++ {
		if a[i] != p[i] {
			return false
		}
	}
	if r := bits % 8; r != 0 {
		m := byte(0xff << (8 - r))
		return a[n]&m == p[n]
	}
	return true
}

// LookupService returns the name of the service that receives packets for (dst, port, proto),
// as the workers see it. Meant for tests and tools, not for the packet path.
func (s *Snapshot) LookupService(dst netip.Addr, port uint16, proto uint8) (string, bool) {
	a, v6 := addr16(dst)
	i := s.lookup(&encap.FlowKey{Dst: a, DstPort: port, Proto: proto, V6: v6})
	if i < 0 {
		return "", false
	}
	return s.services[i].spec.Name, true
}

// LookupNATReturn returns the name of the nat service whose backend (src, port, proto) a reply
// comes from. Meant for tests and tools, not for the packet path.
func (s *Snapshot) LookupNATReturn(src netip.Addr, port uint16, proto uint8) (string, bool) {
	a, v6 := addr16(src)
	i, _ := s.lookupNAT(&encap.FlowKey{Src: a, SrcPort: port, Proto: proto, V6: v6})
	if i < 0 {
		return "", false
	}
	return s.services[i].spec.Name, true
}
