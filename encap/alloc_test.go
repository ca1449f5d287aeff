package encap

import (
	"net/netip"
	"testing"
)

// TestZeroAllocs asserts that the per-packet functions allocate nothing.
func TestZeroAllocs(t *testing.T) {
	v4 := mk(t, tcpSpec(false))
	v6 := mk(t, tcpSpec(true))
	icmpErr := icmpError(t, pktSpec{proto: ProtoUDP, src: ip4VIP, dst: ip4Client, sport: 80, dport: 4000, payload: 100}, 3, 4, 0)
	big := tcpSpec(false)
	big.payload = 1600
	bigPkt := mk(t, big)
	tn := mustTunnel(t, "198.18.0.11", "198.18.128.0/17", 1500)
	tn6 := mustTunnel(t, "2001:db8:2::11", "2001:db8:3::/64", 1500)
	real4, real6 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("2001:db8:2::11")
	var p Packet
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"parse v4", func() { Parse(v4, &p) }},
		{"parse v6", func() { Parse(v6, &p) }},
		{"parse icmp error", func() { Parse(icmpErr, &p) }},
		{"ipip", func() {
			copy(buf[headroom:], v4)
			Parse(buf[headroom:headroom+len(v4)], &p)
			tn.Encap(buf, headroom, len(v4), &p)
		}},
		{"ip6ip6", func() {
			copy(buf[headroom:], v6)
			Parse(buf[headroom:headroom+len(v6)], &p)
			tn6.Encap(buf, headroom, len(v6), &p)
		}},
		{"frag needed", func() {
			copy(buf[headroom:], bigPkt)
			Parse(buf[headroom:headroom+len(bigPkt)], &p)
			if _, _, r := tn.Encap(buf, headroom, len(bigPkt), &p); r != ReplyICMP {
				t.Fatal(r)
			}
		}},
		{"nat v4", func() {
			Parse(v4, &p)
			NATToBackend(v4, &p, real4, 8080)
			NATToClient(v4, &p, real4, 80)
			SetMACs(v4, macReal, macLBOut)
		}},
		{"nat v6", func() { Parse(v6, &p); NATToBackend(v6, &p, real6, 8080) }},
		{"nat icmp error", func() { Parse(icmpErr, &p); NATToBackend(icmpErr, &p, real4, 8080) }},
		{"reason string", func() { _ = TooBig.String() }},
	} {
		if a := testing.AllocsPerRun(200, tc.f); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, a)
		}
	}
}
