package lab

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Iface is one interface of a host namespace.
type Iface struct {
	Name   string           // name inside the host namespace, e.g. "eth0"
	Index  int              // ifindex inside the host namespace
	MAC    net.HardwareAddr // its MAC address
	Addr   netip.Prefix     // IPv4 address with the segment's prefix length
	Addr6  netip.Prefix     // IPv6 address; invalid when IPv6 is off
	Peer   string           // the veth peer (a bridge port) in the switch namespace
	MTU    int
	Queues int // rx queues (as many tx queues)
}

// newBridge makes a bridge in ns, up, without STP delay or multicast snooping (so IPv6
// neighbour solicitations are flooded to every port, as on a dumb switch).
func newBridge(ns *NS, name string, mtu int) (netlink.Link, error) {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, MulticastSnooping: &off}
	if err := ns.nl.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("%s: add bridge %s: %w", ns.name, name, err)
	}
	l, err := ns.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: find bridge %s: %w", ns.name, name, err)
	}
	if err := ns.nl.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("%s: set %s up: %w", ns.name, name, err)
	}
	return l, nil
}

// plug connects host to the bridge br in the switch namespace sw with a veth pair: swName
// is the bridge port (with ifindex swIndex), hostName the interface in host. Both ends come
// up with offloads off. swIndex must differ from the host end's ifindex (small numbers):
// the kernel handles a veth's carrier change at once only when its ifindex differs from
// its peer's; otherwise the change (and the real qdisc replacing the one that drops every
// packet) may wait up to a second.
func plug(sw *NS, br netlink.Link, swName string, swIndex int, host *NS, hostName string, mtu, queues int) (Iface, error) {
	v := &netlink.Veth{
		LinkAttrs:       netlink.LinkAttrs{Name: swName, Index: swIndex, MTU: mtu, NumTxQueues: queues, NumRxQueues: queues},
		PeerName:        hostName,
		PeerNamespace:   netlink.NsFd(host.handle),
		PeerMTU:         uint32(mtu),
		PeerNumTxQueues: uint32(queues),
		PeerNumRxQueues: uint32(queues),
	}
	if err := sw.nl.LinkAdd(v); err != nil {
		return Iface{}, fmt.Errorf("%s: add veth %s<->%s/%s: %w", sw.name, swName, host.name, hostName, err)
	}
	sl, err := sw.nl.LinkByName(swName)
	if err != nil {
		return Iface{}, fmt.Errorf("%s: find %s: %w", sw.name, swName, err)
	}
	if err := sw.nl.LinkSetMasterByIndex(sl, br.Attrs().Index); err != nil {
		return Iface{}, fmt.Errorf("%s: enslave %s to %s: %w", sw.name, swName, br.Attrs().Name, err)
	}
	if err := sw.OffloadsOff(swName); err != nil {
		return Iface{}, err
	}
	if err := sw.nl.LinkSetUp(sl); err != nil {
		return Iface{}, fmt.Errorf("%s: set %s up: %w", sw.name, swName, err)
	}
	hl, err := host.nl.LinkByName(hostName)
	if err != nil {
		return Iface{}, fmt.Errorf("%s: find %s: %w", host.name, hostName, err)
	}
	if err := host.OffloadsOff(hostName); err != nil {
		return Iface{}, err
	}
	if err := host.nl.LinkSetUp(hl); err != nil {
		return Iface{}, fmt.Errorf("%s: set %s up: %w", host.name, hostName, err)
	}
	return Iface{Name: hostName, Index: hl.Attrs().Index, MAC: hl.Attrs().HardwareAddr, Peer: swName, MTU: hl.Attrs().MTU, Queues: hl.Attrs().NumRxQueues}, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// AddAddr adds address p (with its prefix length) to interface ifname in the namespace,
// without duplicate address detection, and waits (up to 5s) until the kernel routes it as
// local: an IPv6 address gets its local route from deferred work, so a packet to it in the
// first milliseconds would be answered "no route".
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("%s: add %s to %s: %w", n.name, p, ifname, err)
	}
	return n.waitLocal(p.Addr(), 5*time.Second)
}

// waitLocal polls the routing table until addr resolves to a local route.
func (n *NS) waitLocal(addr netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rs, err := n.nl.RouteGet(addr.AsSlice())
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not routed as local after %v (%v)", n.name, addr, timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// DelAddr removes address p from interface ifname in the namespace.
func (n *NS) DelAddr(ifname string, p netip.Prefix) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	if err := n.nl.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("%s: delete %s from %s: %w", n.name, p, ifname, err)
	}
	return nil
}

// AddRoute adds a route to dst (an invalid prefix means the default route of gw's family)
// via gateway gw on interface ifname in the namespace.
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr, ifname string) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	if !dst.IsValid() {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("%s: route %s via %s dev %s: %w", n.name, dst, gw, ifname, err)
	}
	return nil
}

// SetMTU sets the MTU of interface ifname in the namespace.
func (n *NS) SetMTU(ifname string, mtu int) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	if err := n.nl.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("%s: set %s mtu %d: %w", n.name, ifname, mtu, err)
	}
	return nil
}

// Neighbor returns the MAC address the namespace's neighbour table holds for addr on
// ifname, or nil when it has no complete entry.
func (n *NS) Neighbor(ifname string, addr netip.Addr) (net.HardwareAddr, error) {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	neighs, err := n.nl.NeighList(l.Attrs().Index, fam)
	if err != nil {
		return nil, fmt.Errorf("%s: list neighbours: %w", n.name, err)
	}
	for _, ne := range neighs {
		ip, ok := netip.AddrFromSlice(ne.IP)
		if ok && ip.Unmap() == addr && len(ne.HardwareAddr) == 6 &&
			ne.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
			return ne.HardwareAddr, nil
		}
	}
	return nil, nil
}
