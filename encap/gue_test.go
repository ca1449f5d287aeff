package encap

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func mustUDPTunnel(t testing.TB, backend, source string, e TunnelEncap, port uint16) Tunnel {
	t.Helper()
	tn, err := NewTunnel(TunnelConfig{DstMAC: macReal, SrcMAC: macLBOut, Backend: netip.MustParseAddr(backend),
		Source: netip.MustParsePrefix(source), Encap: e, Port: port})
	if err != nil {
		t.Fatalf("NewTunnel: %v", err)
	}
	return tn
}

// TestUDPEncap encapsulates packets of every kind in GUE and FOU over both outer families and
// checks the result with gopacket: the outer headers, the UDP ports and length, the GUE
// header, the inner packet unchanged, and every checksum (the outer UDP one against a naive
// sum over the whole inner packet, so the shortcut for TCP/UDP inner packets is checked).
func TestUDPEncap(t *testing.T) {
	udpZero := pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 443, payload: 31, udpZero: true}
	inners := []struct {
		name string
		pkt  []byte
	}{
		{"tcp4", mk(t, tcpSpec(false))},
		{"tcp6", mk(t, tcpSpec(true))},
		{"udp4 options", mk(t, pktSpec{ipOpts: true, proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 443, payload: 33})},
		{"udp4 no checksum", mk(t, udpZero)},
		{"udp6", mk(t, pktSpec{v6: true, proto: ProtoUDP, src: ip6Client, dst: ip6VIP, sport: 4000, dport: 443, payload: 1})},
		{"icmp4", mk(t, pktSpec{proto: ProtoICMP, src: ip4Client, dst: ip4VIP, payload: 40})},
		{"icmp6", mk(t, pktSpec{v6: true, proto: ProtoICMPv6, src: ip6Client, dst: ip6VIP, payload: 4})},
		{"udp6 ext headers", ipv6Ext(t, []uint8{0, 60}, 0, false)},
		{"udp6 first fragment", ipv6Ext(t, []uint8{44}, 0, true)},
	}
	for _, e := range []TunnelEncap{EncapGUE, EncapFOU} {
		for _, outer := range []struct{ backend, source string }{{"198.18.0.11", "198.18.0.2/32"}, {"2001:db8:2::11", "2001:db8:3::/64"}} {
			outer6 := netip.MustParseAddr(outer.backend).Is6()
			for _, in := range inners {
				t.Run(e.String()+" "+outer.source+" "+in.name, func(t *testing.T) {
					checkUDPEncap(t, mustUDPTunnel(t, outer.backend, outer.source, e, 0), e, outer6, in.pkt)
				})
			}
		}
	}
}

func checkUDPEncap(t *testing.T, tn Tunnel, e TunnelEncap, outer6 bool, pkt []byte) {
	buf, off, n := frame(pkt, headroom)
	var p Packet
	if r := Parse(buf[off:off+n], &p); r != OK {
		t.Fatal(r)
	}
	inner := append([]byte(nil), pkt[p.L3Off:p.IPEnd]...)
	noff, nn, r := tn.Encap(buf, off, n, &p)
	if r != OK {
		t.Fatalf("Encap: %v", r)
	}
	ohl, uhl := 20, 8
	if outer6 {
		ohl = 40
	}
	if e == EncapGUE {
		uhl = 12
	}
	if tn.Overhead() != ohl+uhl || noff != off+p.L3Off-ohl-uhl-14 || nn != 14+ohl+uhl+len(inner) {
		t.Fatalf("overhead %d off %d n %d", tn.Overhead(), noff, nn)
	}
	out := buf[noff : noff+nn]
	if !bytes.Equal(out[14+ohl+uhl:], inner) {
		t.Fatal("inner packet changed")
	}
	g := decode(t, out)
	udp, ok := g.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		t.Fatalf("no outer UDP: %v", g)
	}
	if udp.DstPort != DefaultGUEPort || udp.SrcPort < 49152 || int(udp.Length) != uhl+len(inner) {
		t.Errorf("udp %d -> %d length %d", udp.SrcPort, udp.DstPort, udp.Length)
	}
	if outer6 {
		if ip := g.Layers()[1].(*layers.IPv6); ip.NextHeader != layers.IPProtocolUDP || int(ip.Length) != uhl+len(inner) {
			t.Errorf("outer ipv6 %+v", ip)
		}
	} else if ip := g.Layers()[1].(*layers.IPv4); ip.Protocol != layers.IPProtocolUDP || int(ip.Length) != 20+uhl+len(inner) {
		t.Errorf("outer ipv4 %+v", ip)
	}
	if e == EncapGUE {
		want := []byte{0, ProtoIPIP, 0, 0}
		if p.IPVersion == 6 {
			want[1] = ProtoIPv6
		}
		if !bytes.Equal(udp.Payload[:4], want) {
			t.Errorf("gue header %x, want %x", udp.Payload[:4], want)
		}
	}
	want := 1 // the outer UDP checksum
	if !outer6 {
		want++
	}
	if got := verifyChecksums(t, g); got != want {
		t.Errorf("checked %d outer checksums, want %d", got, want)
	}
	lt := layers.LayerTypeIPv4
	if p.IPVersion == 6 {
		lt = layers.LayerTypeIPv6
	}
	ig := gopacket.NewPacket(inner, lt, gopacket.Default)
	if el := ig.ErrorLayer(); el != nil {
		t.Fatalf("inner: %v", el.Error())
	}
	verifyChecksums(t, ig)
}

// TestUDPEncapSourcePort checks that the outer source port follows the flow: the same flow
// gets the same port, and 200 flows get many different ones.
func TestUDPEncapSourcePort(t *testing.T) {
	tn := mustUDPTunnel(t, "198.18.0.11", "198.18.0.2/32", EncapFOU, 9999)
	ports := map[uint16]int{}
	byFlow := map[uint16]uint16{}
	for i := range 400 {
		s := tcpSpec(false)
		s.sport = uint16(10000 + i%200)
		buf, off, n := frame(mk(t, s), headroom)
		var p Packet
		Parse(buf[off:off+n], &p)
		noff, nn, r := tn.Encap(buf, off, n, &p)
		if r != OK {
			t.Fatal(r)
		}
		u := UDP(buf[noff+34 : noff+nn])
		if u.DstPort() != 9999 {
			t.Fatalf("dst port %d", u.DstPort())
		}
		if prev, ok := byFlow[s.sport]; ok && prev != u.SrcPort() {
			t.Fatalf("flow %d: source port %d then %d", s.sport, prev, u.SrcPort())
		}
		byFlow[s.sport] = u.SrcPort()
		ports[u.SrcPort()]++
	}
	if len(ports) < 180 {
		t.Errorf("200 flows on %d source ports", len(ports))
	}
}

func TestUDPEncapMTU(t *testing.T) {
	tn, err := NewTunnel(TunnelConfig{DstMAC: macReal, SrcMAC: macLBOut, Backend: netip.MustParseAddr("198.18.0.11"),
		Source: netip.MustParsePrefix("198.18.0.2/32"), Encap: EncapGUE, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	s := tcpSpec(false)
	s.payload = 1500 - 40 - 32 + 1 // one byte over what fits behind 32 bytes of outer headers
	buf, off, n := frame(mk(t, s), headroom)
	var p Packet
	Parse(buf[off:off+n], &p)
	noff, nn, r := tn.Encap(buf, off, n, &p)
	if r != ReplyICMP {
		t.Fatalf("oversized packet: %v", r)
	}
	g := decode(t, buf[noff:noff+nn])
	if ic, ok := g.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); !ok || ic.Seq != 1500-32 {
		t.Errorf("icmp %+v", ic)
	}
}

func TestTunnelEncapErrors(t *testing.T) {
	base := TunnelConfig{Backend: netip.MustParseAddr("198.18.0.11"), Source: netip.MustParsePrefix("198.18.0.2/32")}
	for _, c := range []TunnelConfig{
		func() TunnelConfig { c := base; c.Port = 6080; return c }(),
		func() TunnelConfig { c := base; c.Encap = 9; return c }(),
	} {
		if _, err := NewTunnel(c); !errors.Is(err, ErrTunnelEncap) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, s := range []string{"", "ipip", "gue", "fou"} {
		e, err := ParseTunnelEncap(s)
		if err != nil || (s != "" && e.String() != s) {
			t.Errorf("%q: %v %v", s, e, err)
		}
	}
	if _, err := ParseTunnelEncap("vxlan"); !errors.Is(err, ErrTunnelEncap) {
		t.Errorf("vxlan: %v", err)
	}
}

// FuzzUDPTunnel encapsulates arbitrary frames in GUE and FOU: the frame stays in its buffer,
// the inner packet is unchanged, and the outer UDP checksum holds unless the inner packet's
// own transport checksum is wrong (which the outer one then inherits, by design).
func FuzzUDPTunnel(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0), uint8(200))
	}
	tunnels := [4]Tunnel{
		mustUDPTunnel(f, "198.18.0.11", "198.18.0.2/32", EncapGUE, 0),
		mustUDPTunnel(f, "198.18.0.11", "198.18.128.0/17", EncapFOU, 0),
		mustUDPTunnel(f, "2001:db8:2::11", "2001:db8:3::/64", EncapGUE, 7000),
		mustUDPTunnel(f, "2001:db8:2::11", "2001:db8:3::2/128", EncapFOU, 0),
	}
	f.Fuzz(func(t *testing.T, b []byte, which uint8, room uint8) {
		buf := make([]byte, int(room)+len(b)+64)
		off, n := int(room), len(b)
		copy(buf[off:], b)
		var p Packet
		if Parse(buf[off:off+n], &p) != OK {
			return
		}
		orig := append([]byte(nil), buf[off:off+n]...)
		tn := tunnels[which%4]
		innerIP := append([]byte(nil), buf[off+p.L3Off:off+p.IPEnd]...)
		noff, nn, r := tn.Encap(buf, off, n, &p)
		if noff < 0 || nn < 0 || noff+nn > len(buf) {
			t.Fatalf("frame out of the buffer: off %d n %d (%d)", noff, nn, len(buf))
		}
		if r != OK {
			return
		}
		var q Packet
		if rr := Parse(buf[noff:noff+nn], &q); rr != OK || q.L4Proto != ProtoUDP {
			t.Fatalf("outer parse %v proto %d", rr, q.L4Proto)
		}
		if !bytes.Equal(buf[noff+q.L4Off+tn.udpLen:noff+nn], innerIP) {
			t.Fatal("inner packet changed")
		}
		if l4Sum(buf[noff:noff+nn], &q) != 0xffff {
			innerBad := p.HasL4 && (p.L4Proto == ProtoTCP || p.L4Proto == ProtoUDP) && l4Sum(orig, &p) != 0xffff
			if !innerBad {
				t.Fatal("outer UDP checksum wrong for an inner packet whose own checksum holds")
			}
		}
	})
}

func TestTunnelEncapText(t *testing.T) {
	for _, e := range []TunnelEncap{EncapIPIP, EncapGUE, EncapFOU} {
		b, err := e.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back TunnelEncap
		if err := back.UnmarshalText(b); err != nil || back != e {
			t.Errorf("%v: %q -> %v %v", e, b, back, err)
		}
	}
	if _, err := TunnelEncap(9).MarshalText(); !errors.Is(err, ErrTunnelEncap) {
		t.Errorf("encap 9: %v", err)
	}
	var e TunnelEncap
	if err := e.UnmarshalText([]byte("geneve")); !errors.Is(err, ErrTunnelEncap) {
		t.Errorf("geneve: %v", err)
	}
}
