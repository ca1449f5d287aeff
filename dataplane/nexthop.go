package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// Errors of ResolveNextHop.
var (
	ErrNoRoute     = errors.New("no route")
	ErrNoNeighbour = errors.New("next hop's link-layer address not resolved")
)

// ResolveNextHop asks the kernel how it would reach dst, as LVS does: the route (netlink
// route get) gives the egress interface and the gateway (or dst itself when it is on-link),
// the neighbour table gives the next hop's MAC. When the neighbour is not known, it asks the
// kernel to resolve it (a neighbour entry flagged NTF_USE starts ARP or neighbour
// discovery) and polls until ctx is done. Call it from control, never on the packet path.
func ResolveNextHop(ctx context.Context, dst netip.Addr) (NextHop, error) {
	hop, _, err := ResolveNextHopVia(ctx, dst)
	return hop, err
}

// ResolveNextHopVia is ResolveNextHop that also returns the neighbour the hop leads to: the
// route's gateway, or dst itself when it is on-link (valid as soon as the route is known, so
// also with ErrNoNeighbour).
func ResolveNextHopVia(ctx context.Context, dst netip.Addr) (NextHop, netip.Addr, error) {
	dst = dst.Unmap()
	routes, err := netlink.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return NextHop{}, netip.Addr{}, fmt.Errorf("route to %v: %w: %w", dst, ErrNoRoute, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return NextHop{}, netip.Addr{}, fmt.Errorf("route to %v: %w", dst, ErrNoRoute)
	}
	rt := routes[0]
	link, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return NextHop{}, netip.Addr{}, fmt.Errorf("route to %v: interface %d: %w", dst, rt.LinkIndex, err)
	}
	attrs := link.Attrs()
	hop := NextHop{IfIndex: attrs.Index, MTU: attrs.MTU}
	if len(attrs.HardwareAddr) != 6 {
		return NextHop{}, netip.Addr{}, fmt.Errorf("route to %v: interface %s has no ethernet address", dst, attrs.Name)
	}
	copy(hop.SrcMAC[:], attrs.HardwareAddr)
	nh := dst
	if rt.Gw != nil {
		if a, ok := netip.AddrFromSlice(rt.Gw); ok {
			nh = a.Unmap()
		}
	}
	family := netlink.FAMILY_V4
	if nh.Is6() {
		family = netlink.FAMILY_V6
	}
	kicked := false
	for {
		mac, ok, err := lookupNeighbour(attrs.Index, family, nh)
		if err != nil {
			return NextHop{}, nh, fmt.Errorf("neighbours of %s: %w", attrs.Name, err)
		}
		if ok {
			hop.DstMAC = mac
			return hop, nh, nil
		}
		if !kicked {
			kicked = true
			n := &netlink.Neigh{LinkIndex: attrs.Index, Family: family, IP: net.IP(nh.AsSlice()),
				State: netlink.NUD_NONE, Flags: netlink.NTF_USE}
			// Best effort: if the kernel refuses, the poll below still sees resolutions that
			// other traffic (health checks) triggers.
			_ = netlink.NeighSet(n)
		}
		select {
		case <-ctx.Done():
			return NextHop{}, nh, fmt.Errorf("next hop %v of %v on %s: %w: %w", nh, dst, attrs.Name,
				ErrNoNeighbour, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func lookupNeighbour(ifindex, family int, ip netip.Addr) ([6]byte, bool, error) {
	neighs, err := netlink.NeighList(ifindex, family)
	if err != nil {
		return [6]byte{}, false, err
	}
	for _, n := range neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || a.Unmap() != ip || !UsableNeighbour(n.State) || len(n.HardwareAddr) != 6 {
			continue
		}
		var mac [6]byte
		copy(mac[:], n.HardwareAddr)
		return mac, true, nil
	}
	return [6]byte{}, false, nil
}

// UsableNeighbour reports whether a neighbour entry in state (netlink NUD_* flags) holds a
// link-layer address packets can be sent to.
func UsableNeighbour(state int) bool {
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
		netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	return state&usable != 0
}
