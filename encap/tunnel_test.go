package encap

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

func mustTunnel(t testing.TB, backend, source string, mtu int) Tunnel {
	t.Helper()
	tn, err := NewTunnel(TunnelConfig{DstMAC: macReal, SrcMAC: macLBOut, Backend: netip.MustParseAddr(backend), Source: netip.MustParsePrefix(source), MTU: mtu})
	if err != nil {
		t.Fatalf("NewTunnel: %v", err)
	}
	return tn
}

func TestSetMACs(t *testing.T) {
	b := mk(t, tcpSpec(false))
	orig := append([]byte(nil), b...)
	if r := SetMACs(b, macReal, macLBOut); r != OK {
		t.Fatal(r)
	}
	g := decode(t, b)
	eth := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, macReal[:]) || !bytes.Equal(eth.SrcMAC, macLBOut[:]) || !bytes.Equal(b[12:], orig[12:]) {
		t.Errorf("macs %v %v or the rest changed", eth.DstMAC, eth.SrcMAC)
	}
	if verifyChecksums(t, g) != 2 {
		t.Error("expected IPv4 and TCP checksums")
	}
	if SetMACs(b[:13], macReal, macLBOut) != Truncated {
		t.Error("short frame accepted")
	}
}

func TestTunnelEncap(t *testing.T) {
	for _, tc := range []struct {
		name            string
		inner           pktSpec
		backend, source string
		outer6          bool
	}{
		{"ipip", tcpSpec(false), "198.18.0.11", "198.18.0.2/32", false},
		{"ipip vlan options udp", pktSpec{vlan: true, ipOpts: true, proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 9000, payload: 33}, "198.18.0.11", "198.18.0.2/32", false},
		{"ipip no df", func() pktSpec { s := tcpSpec(false); s.df = false; return s }(), "198.18.0.11", "198.18.0.2/32", false},
		{"ip6ip6", tcpSpec(true), "2001:db8:2::11", "2001:db8:3::2/128", true},
		{"ip6ip6 udp", pktSpec{v6: true, proto: ProtoUDP, src: ip6Client, dst: ip6VIP, sport: 4000, dport: 9000, payload: 33}, "2001:db8:2::11", "2001:db8:3::2/128", true},
		{"4in6", tcpSpec(false), "2001:db8:2::11", "2001:db8:3::2/128", true},
		{"6in4", tcpSpec(true), "198.18.0.11", "198.18.0.2/32", false},
		{"icmp echo 4in4", pktSpec{proto: ProtoICMP, src: ip4Client, dst: ip4VIP, payload: 40}, "198.18.0.11", "198.18.0.2/32", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := mk(t, tc.inner)
			buf, off, n := frame(orig, headroom)
			var p Packet
			if r := Parse(buf[off:off+n], &p); r != OK {
				t.Fatal(r)
			}
			innerIP := append([]byte(nil), orig[p.L3Off:p.IPEnd]...)
			tn := mustTunnel(t, tc.backend, tc.source, 1500)
			noff, nn, r := tn.Encap(buf, off, n, &p)
			if r != OK {
				t.Fatalf("Encap: %v", r)
			}
			ohl := 20
			if tc.outer6 {
				ohl = 40
			}
			if noff != off+p.L3Off-ohl-14 || nn != 14+ohl+len(innerIP) {
				t.Fatalf("off %d n %d", noff, nn)
			}
			out := buf[noff : noff+nn]
			if !bytes.Equal(out[14+ohl:], innerIP) {
				t.Fatal("inner packet changed")
			}
			g := decode(t, out)
			eth := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.DstMAC, macReal[:]) || !bytes.Equal(eth.SrcMAC, macLBOut[:]) {
				t.Errorf("macs %v %v", eth.DstMAC, eth.SrcMAC)
			}
			wantProto := layers.IPProtocolIPv4
			if tc.inner.v6 {
				wantProto = layers.IPProtocolIPv6
			}
			backend := net.ParseIP(tc.backend)
			source := net.IP(netip.MustParsePrefix(tc.source).Addr().AsSlice())
			if tc.outer6 {
				ip := g.Layers()[1].(*layers.IPv6)
				if eth.EthernetType != layers.EthernetTypeIPv6 || ip.NextHeader != wantProto || ip.HopLimit != 64 || int(ip.Length) != len(innerIP) ||
					!ip.DstIP.Equal(backend) || !ip.SrcIP.Equal(source) || ip.TrafficClass != 0x28 {
					t.Errorf("outer ipv6 %+v", ip)
				}
			} else {
				ip := g.Layers()[1].(*layers.IPv4)
				wantDF := tc.inner.df || tc.inner.v6
				if eth.EthernetType != layers.EthernetTypeIPv4 || ip.Protocol != wantProto || ip.TTL != 64 || int(ip.Length) != 20+len(innerIP) || ip.IHL != 5 ||
					!ip.DstIP.Equal(backend) || !ip.SrcIP.Equal(source) || ip.TOS != 0x28 || (ip.Flags&layers.IPv4DontFragment != 0) != wantDF {
					t.Errorf("outer ipv4 %+v", ip)
				}
				if wantID := uint16(0x1234); !tc.inner.v6 && ip.Id != wantID { // mk's IPv4 ID
					t.Errorf("outer ID %#x, want the inner packet's %#x", ip.Id, wantID)
				}
			}
			// Outer IPv4, inner IPv4, and the transport checksum must all hold.
			want := 1 // the transport's
			if !tc.outer6 {
				want++
			}
			if !tc.inner.v6 {
				want++
			}
			if got := verifyChecksums(t, g); got != want {
				t.Errorf("checked %d checksums, want %d", got, want)
			}
		})
	}
}

func TestTunnelSourcePrefix(t *testing.T) {
	for _, tc := range []struct {
		source string
		bits   int
	}{{"198.18.128.0/17", 15}, {"198.18.0.0/30", 2}, {"2001:db8:77::/48", 64}, {"2001:db8:77::/120", 8}} {
		t.Run(tc.source, func(t *testing.T) {
			pfx := netip.MustParsePrefix(tc.source)
			backend := "198.18.0.11"
			if pfx.Addr().Is6() {
				backend = "2001:db8:2::11"
			}
			tn := mustTunnel(t, backend, tc.source, 1500)
			seen := map[netip.Addr]int{}
			firstSrc := map[uint16]netip.Addr{}
			for i := 0; i < 400; i++ {
				s := tcpSpec(false)
				s.sport = uint16(10000 + i%200) // every flow twice: the same source both times
				b := mk(t, s)
				buf, off, n := frame(b, headroom)
				var p Packet
				Parse(buf[off:off+n], &p)
				noff, nn, r := tn.Encap(buf, off, n, &p)
				if r != OK {
					t.Fatal(r)
				}
				g := decode(t, buf[noff:noff+nn])
				var src net.IP
				if ip, ok := g.Layers()[1].(*layers.IPv4); ok {
					src = ip.SrcIP
				} else {
					src = g.Layers()[1].(*layers.IPv6).SrcIP
				}
				a, _ := netip.AddrFromSlice(src)
				a = a.Unmap()
				if !pfx.Contains(a) {
					t.Fatalf("source %v outside %v", a, pfx)
				}
				if a.Is4() && tc.bits >= 2 {
					if a == pfx.Masked().Addr() || a == lastAddr(pfx) {
						t.Fatalf("source %v is the prefix's network or broadcast address", a)
					}
				}
				if prev, ok := firstSrc[s.sport]; ok && prev != a {
					t.Fatalf("flow %d moved from %v to %v", s.sport, prev, a)
				}
				firstSrc[s.sport] = a
				seen[a]++
				verifyChecksums(t, g)
			}
			wantDistinct := 100
			if tc.bits == 2 {
				wantDistinct = 2 // .1 and .2 only
			}
			if len(seen) < wantDistinct {
				t.Errorf("200 flows used only %d source addresses", len(seen))
			}
		})
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func TestNewTunnelErrors(t *testing.T) {
	for _, c := range []TunnelConfig{
		{Backend: netip.MustParseAddr("198.18.0.1"), Source: netip.MustParsePrefix("2001:db8::/64")},
		{Backend: netip.Addr{}, Source: netip.MustParsePrefix("198.18.0.2/32")},
		{Backend: netip.MustParseAddr("198.18.0.1"), Source: netip.MustParsePrefix("198.18.0.2/32"), MTU: 60},
		{Backend: netip.MustParseAddr("2001:db8::1"), Source: netip.MustParsePrefix("2001:db8::2/128"), MTU: 1279},
	} {
		if _, err := NewTunnel(c); err == nil {
			t.Errorf("NewTunnel(%+v) accepted", c)
		}
	}
}

func TestZeroTunnel(t *testing.T) {
	buf, off, n := frame(mk(t, tcpSpec(false)), headroom)
	var p Packet
	Parse(buf[off:off+n], &p)
	var tn Tunnel
	if _, _, r := tn.Encap(buf, off, n, &p); r != NoTunnel {
		t.Errorf("zero Tunnel: %v", r)
	}
}

func TestTunnelNoHeadroom(t *testing.T) {
	b := mk(t, tcpSpec(false))
	buf, off, n := frame(b, 19)
	var p Packet
	Parse(buf[off:off+n], &p)
	tn := mustTunnel(t, "198.18.0.11", "198.18.0.2/32", 1500)
	before := append([]byte(nil), buf...)
	if _, _, r := tn.Encap(buf, off, n, &p); r != NoHeadroom {
		t.Fatalf("Encap = %v, want NoHeadroom", r)
	}
	if !bytes.Equal(before, buf) {
		t.Error("frame written although there was no room")
	}
	buf, off, n = frame(b, 20)
	Parse(buf[off:off+n], &p)
	if _, _, r := tn.Encap(buf, off, n, &p); r != OK {
		t.Fatalf("Encap with exactly 20 bytes of headroom = %v", r)
	}
}
