package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// ResolveNextHop finds the egress interface and MACs the kernel would use, resolving the
// neighbour itself when the kernel has no entry yet, and says clearly when it cannot.
func TestResolveNextHop(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 1, NoHTTP: true})
	b := tn.Backends[0]
	lbIf, _ := tn.LB.Iface("eth0")
	for _, addr := range []netip.Addr{b.Addr(), b.Addr6()} {
		family := netlink.FAMILY_V4
		if addr.Is6() {
			family = netlink.FAMILY_V6
		}
		if neighs, err := tn.LB.Handle().NeighList(lbIf.Index, family); err == nil {
			for _, n := range neighs {
				if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == addr && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE) != 0 {
					t.Logf("%v already resolved before the test", addr)
				}
			}
		}
		hop := resolve(t, tn.LB, addr)
		want := NextHop{IfIndex: lbIf.Index, SrcMAC: [6]byte(lbIf.MAC), DstMAC: [6]byte(b.Ifaces[0].MAC), MTU: 1500}
		if hop != want {
			t.Errorf("%v: %+v, want %+v", addr, hop, want)
		}
	}
	// On-link but nobody there: the neighbour never resolves.
	err := tn.LB.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := ResolveNextHop(ctx, netip.MustParseAddr("198.18.0.250"))
		return err
	})
	if !errors.Is(err, ErrNoNeighbour) {
		t.Errorf("absent neighbour: %v", err)
	}
	// Off-link, via the LB's default route: the gateway's MAC (the client's, in this net).
	hop := resolve(t, tn.LB, netip.MustParseAddr("198.19.200.1"))
	cliIf := tn.Client.Ifaces[0]
	if hop.DstMAC != [6]byte(cliIf.MAC) || hop.IfIndex != lbIf.Index {
		t.Errorf("via the gateway: %+v, want the client's MAC %v", hop, cliIf.MAC)
	}
}
