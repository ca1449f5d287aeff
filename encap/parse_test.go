package encap

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func key(src, dst net.IP, sport, dport uint16, proto uint8) FlowKey {
	k := FlowKey{SrcPort: sport, DstPort: dport, Proto: proto}
	if v4 := src.To4(); v4 != nil {
		copy(k.Src[:], v4)
		copy(k.Dst[:], dst.To4())
	} else {
		copy(k.Src[:], src.To16())
		copy(k.Dst[:], dst.To16())
		k.V6 = true
	}
	return k
}

func TestParseTCPUDPICMP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      pktSpec
		l3, l4 int
	}{
		{"tcp4", tcpSpec(false), 14, 34},
		{"tcp4 vlan options", func() pktSpec { s := tcpSpec(false); s.vlan, s.ipOpts = true, true; return s }(), 18, 42},
		{"udp4", pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 9000, payload: 30}, 14, 34},
		{"icmp4 echo", pktSpec{proto: ProtoICMP, src: ip4Client, dst: ip4VIP, payload: 8}, 14, 34},
		{"tcp6", tcpSpec(true), 14, 54},
		{"udp6 vlan", pktSpec{v6: true, vlan: true, proto: ProtoUDP, src: ip6Client, dst: ip6VIP, sport: 1, dport: 2, payload: 3}, 18, 58},
		{"icmp6 echo", pktSpec{v6: true, proto: ProtoICMPv6, src: ip6Client, dst: ip6VIP, payload: 4}, 14, 54},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mk(t, tc.s)
			var p Packet
			if r := Parse(b, &p); r != OK {
				t.Fatalf("Parse: %v", r)
			}
			g := decode(t, b)
			want := key(tc.s.src, tc.s.dst, tc.s.sport, tc.s.dport, tc.s.proto)
			if p.Key != want {
				t.Errorf("key %+v, want %+v", p.Key, want)
			}
			if p.L3Off != tc.l3 || p.L4Off != tc.l4 || p.IPEnd != tc.l3+p.TotalLen || p.IPEnd > len(b) {
				t.Errorf("offsets l3 %d l4 %d end %d, want %d %d %d", p.L3Off, p.L4Off, p.IPEnd, tc.l3, tc.l4, tc.l3+p.TotalLen)
			}
			if p.Tagged != tc.s.vlan || (tc.s.vlan && p.VLANTCI != 3<<13|42) {
				t.Errorf("vlan %v %#x", p.Tagged, p.VLANTCI)
			}
			if !p.HasL4 || p.Fragment || p.ICMPError || p.L4Proto != tc.s.proto {
				t.Errorf("HasL4 %v Fragment %v ICMPError %v", p.HasL4, p.Fragment, p.ICMPError)
			}
			if tc.s.v6 {
				ip := g.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if p.IPVersion != 6 || p.TTL != ip.HopLimit || p.TOS != ip.TrafficClass || p.TotalLen != 40+int(ip.Length) || p.DF || p.EtherType != EtherTypeIPv6 {
					t.Errorf("ipv6 fields %+v", p)
				}
			} else {
				ip := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if p.IPVersion != 4 || p.TTL != ip.TTL || p.TOS != ip.TOS || p.TotalLen != int(ip.Length) || p.DF != tc.s.df || p.IPID != uint32(ip.Id) || p.EtherType != EtherTypeIPv4 {
					t.Errorf("ipv4 fields %+v", p)
				}
			}
			if tc.s.proto == ProtoTCP {
				if !p.SYN() || !p.ACK() || p.FIN() || p.RST() {
					t.Errorf("tcp flags %#x", p.TCPFlags)
				}
			} else if p.TCPFlags != 0 {
				t.Errorf("tcp flags %#x on proto %d", p.TCPFlags, tc.s.proto)
			}
			if tc.s.proto == ProtoICMP && (p.ICMPType != 8 || p.ICMPCode != 0) || tc.s.proto == ProtoICMPv6 && p.ICMPType != 128 {
				t.Errorf("icmp type %d code %d", p.ICMPType, p.ICMPCode)
			}
		})
	}
}

func TestParseEthernetPadding(t *testing.T) {
	s := tcpSpec(false)
	s.payload = 0
	b := mk(t, s) // 54 bytes: the NIC pads to 60
	b = append(b, make([]byte, 6)...)
	var p Packet
	if r := Parse(b, &p); r != OK {
		t.Fatalf("Parse: %v", r)
	}
	if p.IPEnd != 54 || p.TotalLen != 40 {
		t.Errorf("IPEnd %d TotalLen %d, want 54 40", p.IPEnd, p.TotalLen)
	}
}

// ipv6Ext builds an IPv6 UDP frame behind the given extension headers: each entry is the
// next-header number of the extension header (0, 43, 60, 44 with frag offset fragOff).
func ipv6Ext(t testing.TB, exts []uint8, fragOff uint16, more bool) []byte {
	t.Helper()
	udp := make([]byte, 8+12)
	binary.BigEndian.PutUint16(udp[0:], 1111)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	var ext []byte
	for i, nh := range exts {
		next := uint8(ProtoUDP)
		if i+1 < len(exts) {
			next = exts[i+1]
		}
		switch nh {
		case 44:
			fo := fragOff << 3
			if more {
				fo |= 1
			}
			ext = append(ext, next, 0, byte(fo>>8), byte(fo), 0xde, 0xad, 0xbe, 0xef)
		default: // 16 bytes: length field 1
			h := make([]byte, 16)
			h[0], h[1] = next, 1
			h[2], h[3] = 1, 12 // a PadN option covering the rest
			ext = append(ext, h...)
		}
	}
	first := uint8(ProtoUDP)
	if len(exts) > 0 {
		first = exts[0]
	}
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocol(first), HopLimit: 9, SrcIP: ip6Client, DstIP: ip6VIP}
	b := build(t, &layers.Ethernet{SrcMAC: macClient, DstMAC: macLB, EthernetType: layers.EthernetTypeIPv6}, ip, gopacket.Payload(append(ext, udp...)))
	return b
}

func TestParseIPv6ExtensionHeaders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		exts      []uint8
		fragOff   uint16
		more      bool
		want      Reason
		ports     bool
		fragment  bool
		hasL4     bool
		extLength int
	}{
		{"none", nil, 0, false, OK, true, false, true, 0},
		{"hbh routing destopts", []uint8{0, 43, 60}, 0, false, OK, true, false, true, 48},
		{"first fragment", []uint8{0, 44}, 0, true, OK, false, true, true, 24},
		{"non-first fragment", []uint8{44}, 100, false, OK, false, true, false, 8},
		{"atomic fragment", []uint8{44}, 0, false, OK, true, false, true, 8},
		{"at the bound", []uint8{0, 60, 60, 60, 60, 60, 60, 60}, 0, false, OK, true, false, true, 128},
		{"too many", []uint8{0, 60, 60, 60, 60, 60, 60, 60, 60}, 0, false, TooManyExtHeaders, false, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ipv6Ext(t, tc.exts, tc.fragOff, tc.more)
			var p Packet
			r := Parse(b, &p)
			if r != tc.want {
				t.Fatalf("Parse = %v, want %v", r, tc.want)
			}
			if r != OK {
				return
			}
			want := key(ip6Client, ip6VIP, 0, 0, ProtoUDP)
			if tc.ports {
				want.SrcPort, want.DstPort = 1111, 53
			}
			if p.Key != want {
				t.Errorf("key %+v, want %+v", p.Key, want)
			}
			if p.Fragment != tc.fragment || p.HasL4 != tc.hasL4 || p.L4Off != 54+tc.extLength || p.FragOffset != int(tc.fragOff)*8 {
				t.Errorf("fragment %v hasL4 %v l4 %d fragoff %d", p.Fragment, p.HasL4, p.L4Off, p.FragOffset)
			}
			if tc.fragment && p.IPID != 0xdeadbeef {
				t.Errorf("IPID %#x", p.IPID)
			}
		})
	}
}

func TestParseIPv4Fragments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  layers.IPv4Flag
		off    uint16
		hasL4  bool
		frag   bool
		fragOf int
	}{
		{"first", layers.IPv4MoreFragments, 0, true, true, 0},
		{"middle", layers.IPv4MoreFragments, 10, false, true, 80},
		{"last", 0, 10, false, true, 80},
		{"df not a fragment", layers.IPv4DontFragment, 0, true, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := make([]byte, 40)
			binary.BigEndian.PutUint16(pl[0:], 1234)
			binary.BigEndian.PutUint16(pl[2:], 80)
			pl[12] = 5 << 4
			b := build(t, &layers.Ethernet{SrcMAC: macClient, DstMAC: macLB, EthernetType: layers.EthernetTypeIPv4},
				&layers.IPv4{Version: 4, TTL: 3, Protocol: layers.IPProtocolTCP, Flags: tc.flags, FragOffset: tc.off, SrcIP: ip4Client, DstIP: ip4VIP},
				gopacket.Payload(pl))
			var p Packet
			if r := Parse(b, &p); r != OK {
				t.Fatalf("Parse: %v", r)
			}
			want := key(ip4Client, ip4VIP, 0, 0, ProtoTCP)
			if !tc.frag {
				want.SrcPort, want.DstPort = 1234, 80
			}
			if p.Key != want || p.HasL4 != tc.hasL4 || p.Fragment != tc.frag || p.FragOffset != tc.fragOf {
				t.Errorf("key %+v hasL4 %v frag %v off %d", p.Key, p.HasL4, p.Fragment, p.FragOffset)
			}
		})
	}
}

// icmpError builds an ICMP (v6) error frame from router to client... here: from a router to the
// VIP, quoting a VIP->client packet of the given spec (as the client's path would).
func icmpError(t testing.TB, inner pktSpec, typ, code uint8, quote int) []byte {
	t.Helper()
	orig := mk(t, inner)
	q := orig[14:]
	if quote > 0 && quote < len(q) {
		q = q[:quote]
	}
	router4, router6 := net.IP{198, 18, 9, 1}, net.ParseIP("2001:db8:9::1")
	eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macLB, EthernetType: layers.EthernetTypeIPv4}
	if inner.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		body := append([]byte{0, 0, 0x05, 0xdc}, q...)
		return build(t, eth, &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 64, SrcIP: router6, DstIP: inner.src},
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}, gopacket.Payload(body))
	}
	return build(t, eth, &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: router4, DstIP: inner.src},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}, gopacket.Payload(q))
}

func TestParseICMPErrors(t *testing.T) {
	// The quoted packet goes VIP:80 -> client:40000; its error must key as client -> VIP.
	reply4 := pktSpec{proto: ProtoTCP, df: true, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 200}
	reply6 := pktSpec{v6: true, proto: ProtoUDP, src: ip6VIP, dst: ip6Client, sport: 53, dport: 40001, payload: 200}
	for _, tc := range []struct {
		name      string
		inner     pktSpec
		typ, code uint8
		quote     int
		want      Reason
	}{
		{"frag needed", reply4, 3, 4, 28, OK},
		{"port unreachable", reply4, 3, 3, 0, OK},
		{"time exceeded", reply4, 11, 0, 60, OK},
		{"quote too short", reply4, 3, 4, 24, BadICMPQuote},
		{"packet too big", reply6, 2, 0, 48, OK},
		{"v6 time exceeded", reply6, 3, 0, 0, OK},
		{"v6 unreachable", reply6, 1, 4, 100, OK},
		{"v6 quote too short", reply6, 1, 4, 44, BadICMPQuote},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := icmpError(t, tc.inner, tc.typ, tc.code, tc.quote)
			var p Packet
			r := Parse(b, &p)
			if r != tc.want {
				t.Fatalf("Parse = %v, want %v", r, tc.want)
			}
			if r != OK {
				return
			}
			want := key(tc.inner.dst, tc.inner.src, tc.inner.dport, tc.inner.sport, tc.inner.proto)
			if p.Key != want {
				t.Errorf("key %+v, want %+v", p.Key, want)
			}
			wantL4 := uint8(ProtoICMP)
			if tc.inner.v6 {
				wantL4 = ProtoICMPv6
			}
			if p.L4Proto != wantL4 {
				t.Errorf("L4Proto %d, want %d", p.L4Proto, wantL4)
			}
			if !p.ICMPError || p.ICMPType != tc.typ || p.ICMPCode != tc.code || p.InnerL3Off != p.L4Off+8 || p.InnerL4Off == 0 {
				t.Errorf("icmp error %v type %d code %d inner %d/%d", p.ICMPError, p.ICMPType, p.ICMPCode, p.InnerL3Off, p.InnerL4Off)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	good4 := mk(t, tcpSpec(false))
	good6 := mk(t, tcpSpec(true))
	mod := func(b []byte, f func([]byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want Reason
	}{
		{"empty", nil, Truncated},
		{"short ethernet", good4[:13], Truncated},
		{"short vlan", mod(good4[:16], func(b []byte) { b[12], b[13] = 0x81, 0 }), Truncated},
		{"arp", mod(good4, func(b []byte) { b[12], b[13] = 0x08, 0x06 }), UnknownEtherType},
		{"short ipv4", good4[:33], Truncated},
		{"ipv4 version 6", mod(good4, func(b []byte) { b[14] = 0x65 }), BadVersion},
		{"ihl 4", mod(good4, func(b []byte) { b[14] = 0x44 }), BadIHL},
		{"ihl beyond frame", mod(good4[:40], func(b []byte) { b[14] = 0x4f }), Truncated},
		{"total length beyond frame", mod(good4, func(b []byte) { b[16] = 0xff }), BadLength},
		{"total length below ihl", mod(good4, func(b []byte) { b[16], b[17] = 0, 19 }), BadLength},
		{"tcp truncated", mod(good4[:50], func(b []byte) { binary.BigEndian.PutUint16(b[16:], 36) }), Truncated},
		{"tcp data offset 4", mod(good4, func(b []byte) { b[34+12] = 4 << 4 }), BadL4Header},
		{"tcp data offset beyond packet", mod(good4[:60], func(b []byte) { binary.BigEndian.PutUint16(b[16:], 46); b[34+12] = 15 << 4 }), BadL4Header},
		{"short ipv6", good6[:53], Truncated},
		{"ipv6 version 4", mod(good6, func(b []byte) { b[14] = 0x45 }), BadVersion},
		{"ipv6 payload beyond frame", mod(good6, func(b []byte) { b[18] = 0xff }), BadLength},
		{"ipv6 jumbogram", mod(good6, func(b []byte) { b[18], b[19] = 0, 0 }), BadLength},
		{"ipv6 ext header truncated", mod(good6[:60], func(b []byte) { b[20] = 60; b[18], b[19] = 0, 6 }), Truncated},
		{"udp length beyond packet", mod(mk(t, pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, payload: 4}), func(b []byte) { b[34+5] = 99 }), BadLength},
		{"udp length below 8", mod(mk(t, pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, payload: 4}), func(b []byte) { b[34+5] = 7 }), BadLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if r := Parse(tc.b, &p); r != tc.want {
				t.Errorf("Parse = %v, want %v", r, tc.want)
			}
		})
	}
}

func TestParseResetsInPlace(t *testing.T) {
	var p Packet
	Parse(icmpError(t, tcpSpec(false), 3, 4, 0), &p)
	if r := Parse(mk(t, tcpSpec(true)), &p); r != OK {
		t.Fatal(r)
	}
	if p.ICMPError || p.InnerL3Off != 0 || p.Key != key(ip6Client, ip6VIP, 40000, 80, ProtoTCP) {
		t.Errorf("stale fields after reuse: %+v", p)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := Reason(0); r < NumReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown_reason" || seen[s] {
			t.Errorf("reason %d: name %q empty or duplicate", r, s)
		}
		seen[s] = true
	}
	if NumReasons.String() != "unknown_reason" || OK.Drop() || ReplyICMP.Drop() || !Truncated.Drop() {
		t.Error("String/Drop of edge values")
	}
}

func TestParseICMPErrorAboutFragment(t *testing.T) {
	inner := pktSpec{proto: ProtoUDP, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 100}
	b := icmpError(t, inner, 11, 1, 0)
	b[14+20+8+6] |= 0x20 // the quoted packet was the first fragment of a datagram
	var p Packet
	if r := Parse(b, &p); r != OK {
		t.Fatal(r)
	}
	if want := key(ip4Client, ip4VIP, 0, 0, ProtoUDP); p.Key != want || !p.ICMPError {
		t.Errorf("key %+v, want the 3-tuple %+v", p.Key, want)
	}
	b6 := ipv6Ext(t, []uint8{44}, 0, true) // a first IPv6 fragment, quoted in a time exceeded
	q := b6[14:]
	e := icmpError(t, pktSpec{v6: true, proto: ProtoUDP, src: ip6VIP, dst: ip6Client, payload: 10}, 3, 1, 0)
	e = append(e[:14+40+8], q...)
	binary.BigEndian.PutUint16(e[18:20], uint16(8+len(q)))
	if r := Parse(e, &p); r != OK {
		t.Fatal(r)
	}
	if want := key(ip6VIP, ip6Client, 0, 0, ProtoUDP); p.Key != want || p.InnerL4Off == 0 {
		t.Errorf("v6 key %+v, want the 3-tuple %+v; inner l4 %d", p.Key, want, p.InnerL4Off)
	}
	// A non-first fragment has no L4 header to point at (nor to rewrite).
	b[14+20+8+7] = 10
	if r := Parse(b, &p); r != OK || p.InnerL4Off != 0 || p.Key != key(ip4Client, ip4VIP, 0, 0, ProtoUDP) {
		t.Errorf("non-first quoted fragment: %v inner l4 %d key %+v", r, p.InnerL4Off, p.Key)
	}
}

// TestParseCommonTakes: Parse's short path takes the common frames (untagged TCP and UDP
// over IPv4 without options and over IPv6 without extension headers) and leaves every other
// kind to the general parse, which FuzzParseCommon holds it to.
func TestParseCommonTakes(t *testing.T) {
	udp4 := pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 53, payload: 20}
	udp6 := udp4
	udp6.v6, udp6.src, udp6.dst = true, ip6Client, ip6VIP
	vlan, opts := tcpSpec(false), tcpSpec(false)
	vlan.vlan, opts.ipOpts = true, true
	frag := mk(t, tcpSpec(false))
	binary.BigEndian.PutUint16(frag[14+6:], 0x2000) // more fragments: the first of several
	for _, c := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"tcp4", mk(t, tcpSpec(false)), true},
		{"tcp6", mk(t, tcpSpec(true)), true},
		{"udp4", mk(t, udp4), true},
		{"udp6", mk(t, udp6), true},
		{"vlan", mk(t, vlan), false},
		{"ip options", mk(t, opts), false},
		{"first fragment", frag, false},
		{"icmp error", icmpError(t, tcpSpec(false), 3, 4, 0), false},
		{"ipv6 extension headers", ipv6Ext(t, []uint8{0, 60}, 0, true), false},
		{"truncated tcp", mk(t, tcpSpec(false))[:14+20+10], false},
	} {
		var p Packet
		if got := ParseCommon(c.pkt, &p); got != c.want {
			t.Errorf("%s: short path took it %v, want %v", c.name, got, c.want)
		}
		var q Packet
		r := Parse(c.pkt, &p)
		if rq := parse(c.pkt, &q); r != rq || p != q {
			t.Errorf("%s: Parse %v %+v, general parse %v %+v", c.name, r, p, rq, q)
		}
	}
}
