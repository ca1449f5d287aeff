package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Kind selects a topology.
type Kind int

const (
	// OneArm is LVS-DR style: client, LB(s) and backends on one L2 segment (a bridge).
	OneArm Kind = iota
	// TwoArm is LVS-NAT style: the client on net A, backends on net B, the LB on both and
	// the backends' default gateway.
	TwoArm
)

func (k Kind) String() string {
	switch k {
	case OneArm:
		return "one-arm"
	case TwoArm:
		return "two-arm"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MaxBackends is the largest Config.Backends.
const MaxBackends = 64

// Config describes a topology. The zero value is a OneArm net with two backends serving
// HTTP on port 80, IPv4 and IPv6, MTU 1500.
type Config struct {
	Kind        Kind
	Backends    int  // number of backends; 0 means 2
	LBs         int  // number of LB namespaces (OneArm only; e.g. 2 for HA tests); 0 means 1
	MTU         int  // MTU of every veth and bridge; 0 means 1500
	Queues      int  // rx and tx queues of every veth (AF_XDP binds per queue); 0 means 1
	DisableIPv6 bool // configure IPv4 only
	NoVIPOnLB   bool // do not put the VIPs on the LB (e.g. when a VRRP test owns them)
	HTTPPort    int  // port of the backends' HTTP servers; 0 means 80
	NoHTTP      bool // do not start the backends' HTTP servers
	// PeerXDP attaches an XDP_PASS program to the switch-side peers of the LB's veths, so
	// that frames the LB sends with XDP_TX or XDP_REDIRECT (rather than through an AF_XDP
	// socket) reach the bridge: a veth drops those unless its peer runs an XDP program.
	PeerXDP bool
	// Decap attaches the IPIP/IP6IP6/4in6 decapsulation tc program to every backend's
	// eth0 ingress (tunnel method); on TwoArm it also puts the VIPs on the backends' lo.
	Decap bool
}

// Host is a namespace with a role and its interfaces.
type Host struct {
	*NS
	Role   string
	Ifaces []Iface
}

// Iface returns the host's interface with the given name.
func (h *Host) Iface(name string) (Iface, bool) {
	for _, i := range h.Ifaces {
		if i.Name == name {
			return i, true
		}
	}
	return Iface{}, false
}

// Addr is the IPv4 address of the host's first interface.
func (h *Host) Addr() netip.Addr { return h.Ifaces[0].Addr.Addr() }

// Addr6 is the IPv6 address of the host's first interface (invalid when IPv6 is off).
func (h *Host) Addr6() netip.Addr { return h.Ifaces[0].Addr6.Addr() }

// Net is a built topology. Close removes everything it made.
type Net struct {
	ID       string
	Kind     Kind
	Config   Config
	Switch   *NS     // holds the bridge(s) "br0" (and "br1" for TwoArm)
	Client   *Host   // "eth0"
	LB       *Host   // LBs[0]
	LBs      []*Host // "eth0" (and "eth1" on net B for TwoArm)
	Backends []*Backend
	VIP      netip.Addr // IPv4 virtual IP
	VIP6     netip.Addr // IPv6 virtual IP (invalid when IPv6 is off)
	// ClientPool and ClientPool6 are routed to the client (a local route on its lo, and
	// non-local bind allowed), so a test can dial from any of their addresses (e.g. to
	// spread flows over many sources with DialWith and a LocalAddr); every other host
	// routes them to the client.
	ClientPool  netip.Prefix
	ClientPool6 netip.Prefix

	closeOnce sync.Once
	closeErr  error
	all       []*NS
	ports     int // switch ports made so far
}

// segment is one L2 network's addressing.
type segment struct {
	v4 [3]byte // first three octets of the /24; hosts get .H
	v6 string  // the /64's text without the host part, e.g. "2001:2:0:1::"
}

func (s segment) addr(h int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{s.v4[0], s.v4[1], s.v4[2], byte(h)}), 24)
}

// prefix and prefix6 are the segment's networks.
func (s segment) prefix() netip.Prefix  { return s.addr(0).Masked() }
func (s segment) prefix6() netip.Prefix { return s.addr6(0).Masked() }

// addr6 uses the same digits as the IPv4 host part: host .11 is "...::11".
func (s segment) addr6(h int) netip.Prefix {
	return netip.PrefixFrom(netip.MustParseAddr(s.v6+strconv.Itoa(h)), 64)
}

var (
	segOne  = segment{v4: [3]byte{198, 18, 0}, v6: "2001:2::"}
	segA    = segment{v4: [3]byte{198, 18, 1}, v6: "2001:2:0:1::"}
	segB    = segment{v4: [3]byte{198, 19, 1}, v6: "2001:2:0:101::"}
	hostCli = 1   // client host number on its segment
	hostLB  = 2   // first LB (OneArm: LB i is 2+i) on the client segment
	hostGW  = 1   // TwoArm: the LB's address on net B
	hostB0  = 11  // first backend
	hostVIP = 100 // the VIP's host number on the client segment
)

// Build builds the topology described by cfg; Close removes it. On error everything made
// so far is removed. It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for the bind mounts).
func Build(cfg Config) (*Net, error) {
	if cfg.Backends == 0 {
		cfg.Backends = 2
	}
	if cfg.LBs == 0 {
		cfg.LBs = 1
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 80
	}
	switch {
	case cfg.Backends < 0 || cfg.Backends > MaxBackends:
		return nil, fmt.Errorf("%w: %d backends (1..%d)", ErrConfig, cfg.Backends, MaxBackends)
	case cfg.LBs < 1 || cfg.LBs > 8:
		return nil, fmt.Errorf("%w: %d LBs (1..8)", ErrConfig, cfg.LBs)
	case cfg.Kind == TwoArm && cfg.LBs != 1:
		return nil, fmt.Errorf("%w: two-arm supports one LB", ErrConfig)
	case cfg.Queues < 0 || cfg.Queues > 16:
		return nil, fmt.Errorf("%w: %d queues (1..16)", ErrConfig, cfg.Queues)
	case cfg.MTU < 1280 || cfg.MTU > 9000:
		return nil, fmt.Errorf("%w: mtu %d (1280..9000)", ErrConfig, cfg.MTU)
	case cfg.Kind != OneArm && cfg.Kind != TwoArm:
		return nil, fmt.Errorf("%w: %v", ErrConfig, cfg.Kind)
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	n := &Net{ID: id, Kind: cfg.Kind, Config: cfg}
	if err := n.build(); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

func (n *Net) ns(role string) (*NS, error) {
	ns, err := NewNS(n.ID, role)
	if err != nil {
		return nil, err
	}
	n.all = append(n.all, ns)
	return ns, nil
}

func (n *Net) host(role string) (*Host, error) {
	ns, err := n.ns(role)
	if err != nil {
		return nil, err
	}
	return &Host{NS: ns, Role: role}, nil
}

// attach plugs h into bridge br as hostIf with host number hn of seg.
func (n *Net) attach(br string, swPort string, h *Host, hostIf string, seg segment, hn int) (Iface, error) {
	brl, err := n.Switch.nl.LinkByName(br)
	if err != nil {
		return Iface{}, fmt.Errorf("%s: find %s: %w", n.Switch.name, br, err)
	}
	n.ports++
	ifc, err := plug(n.Switch, brl, swPort, 1000+n.ports, h.NS, hostIf, n.Config.MTU, n.Config.Queues)
	if err != nil {
		return Iface{}, err
	}
	ifc.Addr = seg.addr(hn)
	if err := h.AddAddr(hostIf, ifc.Addr); err != nil {
		return Iface{}, err
	}
	if !n.Config.DisableIPv6 {
		ifc.Addr6 = seg.addr6(hn)
		if err := h.AddAddr(hostIf, ifc.Addr6); err != nil {
			return Iface{}, err
		}
	}
	h.Ifaces = append(h.Ifaces, ifc)
	return ifc, nil
}

func (n *Net) build() error {
	var err error
	if n.Switch, err = n.ns("sw"); err != nil {
		return err
	}
	cseg := segOne
	if n.Kind == TwoArm {
		cseg = segA
	}
	n.VIP = cseg.addr(hostVIP).Addr()
	if !n.Config.DisableIPv6 {
		n.VIP6 = cseg.addr6(hostVIP).Addr()
	}
	if _, err := newBridge(n.Switch, "br0", n.Config.MTU); err != nil {
		return err
	}
	if n.Client, err = n.host("client"); err != nil {
		return err
	}
	if _, err := n.attach("br0", "client", n.Client, "eth0", cseg, hostCli); err != nil {
		return err
	}
	for i := range n.Config.LBs {
		role := "lb"
		if i > 0 {
			role = "lb" + strconv.Itoa(i)
		}
		lb, err := n.host(role)
		if err != nil {
			return err
		}
		if _, err := n.attach("br0", role, lb, "eth0", cseg, hostLB+i); err != nil {
			return err
		}
		n.LBs = append(n.LBs, lb)
	}
	n.LB = n.LBs[0]
	if n.Kind == TwoArm {
		if _, err := newBridge(n.Switch, "br1", n.Config.MTU); err != nil {
			return err
		}
		if _, err := n.attach("br1", "lb-b", n.LB, "eth1", segB, hostGW); err != nil {
			return err
		}
	}
	bseg := cseg
	if n.Kind == TwoArm {
		bseg = segB
	}
	for i := range n.Config.Backends {
		name := "b" + strconv.Itoa(i)
		h, err := n.host(name)
		if err != nil {
			return err
		}
		br := "br0"
		if n.Kind == TwoArm {
			br = "br1"
		}
		if _, err := n.attach(br, name, h, "eth0", bseg, hostB0+i); err != nil {
			return err
		}
		n.Backends = append(n.Backends, &Backend{Host: h, Name: name})
	}
	if err := n.configure(cseg); err != nil {
		return err
	}
	if err := n.peerXDP(); err != nil {
		return err
	}
	if err := n.startBackends(); err != nil {
		return err
	}
	return n.waitUp(5 * time.Second)
}
