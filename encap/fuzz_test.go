package encap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Seeds for every target: well-formed frames of each kind the parser knows.
func fuzzSeeds(f *testing.F) [][]byte {
	vl := tcpSpec(false)
	vl.vlan, vl.ipOpts = true, true
	return [][]byte{
		mk(f, tcpSpec(false)),
		mk(f, tcpSpec(true)),
		mk(f, vl),
		mk(f, pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 9000, payload: 20}),
		mk(f, pktSpec{v6: true, proto: ProtoICMPv6, src: ip6Client, dst: ip6VIP, payload: 4}),
		icmpError(f, pktSpec{proto: ProtoTCP, df: true, src: ip4VIP, dst: ip4Client, sport: 80, dport: 4000, payload: 50}, 3, 4, 0),
		icmpError(f, pktSpec{v6: true, proto: ProtoUDP, src: ip6VIP, dst: ip6Client, sport: 80, dport: 4000, payload: 50}, 2, 0, 0),
		ipv6Ext(f, []uint8{0, 43, 44, 60}, 0, true),
		ipv6Ext(f, []uint8{44}, 7, false),
	}
}

// checkPacket asserts the invariants of a packet Parse accepted.
func checkPacket(t *testing.T, pkt []byte, p *Packet) {
	t.Helper()
	if !(p.L3Off == 14 || p.L3Off == 18) || p.L3Off > p.L4Off || p.L4Off > p.IPEnd || p.IPEnd > len(pkt) || p.IPEnd != p.L3Off+p.TotalLen {
		t.Fatalf("offsets l3 %d l4 %d end %d total %d len %d", p.L3Off, p.L4Off, p.IPEnd, p.TotalLen, len(pkt))
	}
	if p.Fragment && (p.Key.SrcPort != 0 || p.Key.DstPort != 0) {
		t.Fatal("a fragment with ports")
	}
	if p.ICMPError && (p.InnerL3Off != p.L4Off+8 || p.InnerL3Off > p.IPEnd || p.InnerL4Off > p.IPEnd) {
		t.Fatalf("icmp error offsets %d %d", p.InnerL3Off, p.InnerL4Off)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		r := Parse(b, &p)
		if r >= NumReasons || r == ReplyICMP {
			t.Fatalf("Parse returned %d", r)
		}
		if r == OK {
			checkPacket(t, b, &p)
		}
	})
}

// FuzzParseCommon: whatever frame Parse's short path (ParseCommon) takes, the general
// parse accepts too and leaves the same Packet; a Packet left dirty by an earlier frame
// does not leak into it.
func FuzzParseCommon(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add(mk(f, pktSpec{v6: true, proto: ProtoUDP, src: ip6Client, dst: ip6VIP, sport: 4000, dport: 53, payload: 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast := Packet{Tagged: true, ICMPError: true, InnerL3Off: 99, Fragment: true, FragOffset: 8}
		fast.Key.Src[15] = 1
		if !ParseCommon(b, &fast) {
			return
		}
		var slow Packet
		if r := parse(b, &slow); r != OK {
			t.Fatalf("the short path took a frame parse refuses (%v)", r)
		}
		if fast != slow {
			t.Fatalf("short path %+v\nparse      %+v", fast, slow)
		}
	})
}

// l4Sum is the naive sum over the TCP/UDP segment with its pseudo-header (0xffff when valid).
func l4Sum(pkt []byte, p *Packet) uint16 {
	ip := pkt[p.L3Off:p.IPEnd]
	seg := pkt[p.L4Off:p.IPEnd]
	var ph []byte
	if p.Key.V6 {
		ph = append(append(ph, ip[8:40]...), 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, p.L4Proto)
	} else {
		ph = append(append(ph, ip[12:20]...), 0, p.L4Proto, byte(len(seg)>>8), byte(len(seg)))
	}
	return naiveSum(ph, seg)
}

func FuzzNAT(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint32(0xc612000b), uint16(8080), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, a uint32, port uint16, toClient bool) {
		var p Packet
		if Parse(b, &p) != OK {
			return
		}
		var addr netip.Addr
		if p.Key.V6 {
			var a16 [16]byte
			binary.BigEndian.PutUint32(a16[12:], a)
			a16[0] = 0x20
			addr = netip.AddrFrom16(a16)
		} else {
			var a4 [4]byte
			binary.BigEndian.PutUint32(a4[:], a)
			addr = netip.AddrFrom4(a4)
		}
		plain := !p.Fragment && !p.ICMPError && (p.L4Proto == ProtoTCP || p.L4Proto == ProtoUDP) && p.HasL4
		validBefore := plain && l4Sum(b, &p) == 0xffff
		udpZero := plain && p.L4Proto == ProtoUDP && binary.BigEndian.Uint16(b[p.L4Off+6:]) == 0
		ipValid := p.IPVersion == 4 && naiveSum(b[p.L3Off:p.L4Off]) == 0xffff
		orig := p
		var r Reason
		if toClient {
			r = NATToClient(b, &p, addr, port)
		} else {
			r = NATToBackend(b, &p, addr, port)
		}
		if r != OK {
			t.Fatalf("NAT: %v", r)
		}
		var q Packet
		if rr := Parse(b, &q); rr != OK {
			t.Fatalf("parse after NAT: %v", rr)
		}
		if ipValid && naiveSum(b[q.L3Off:q.L4Off]) != 0xffff {
			t.Fatal("IPv4 header checksum broken by NAT")
		}
		if !plain {
			return
		}
		want := orig.Key
		if toClient {
			copy(want.Src[:], addr.AsSlice())
			if port != 0 {
				want.SrcPort = port
			}
		} else {
			copy(want.Dst[:], addr.AsSlice())
			if port != 0 {
				want.DstPort = port
			}
		}
		if q.Key != want {
			t.Fatalf("key %+v, want %+v", q.Key, want)
		}
		if udpZero {
			if binary.BigEndian.Uint16(b[q.L4Off+6:]) != 0 {
				t.Fatal("UDP checksum 0 changed")
			}
		} else if validBefore && l4Sum(b, &q) != 0xffff {
			t.Fatal("L4 checksum broken by NAT")
		}
	})
}

func FuzzTunnel(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0), uint16(1500), uint8(200))
	}
	tunnels := [4]Tunnel{
		mustTunnel(f, "198.18.0.11", "198.18.0.2/32", 1500),
		mustTunnel(f, "198.18.0.11", "198.18.128.0/17", 1500),
		mustTunnel(f, "2001:db8:2::11", "2001:db8:3::/64", 1500),
		mustTunnel(f, "2001:db8:2::11", "2001:db8:3::2/128", 1500),
	}
	f.Fuzz(func(t *testing.T, b []byte, which uint8, mtu uint16, room uint8) {
		buf := make([]byte, int(room)+len(b)+64)
		off, n := int(room), len(b)
		copy(buf[off:], b)
		var p Packet
		if Parse(buf[off:off+n], &p) != OK {
			return
		}
		tn := tunnels[which%4]
		tn.mtu = 1280 + int(mtu)%1000 // test the MTU paths too
		innerIP := append([]byte(nil), buf[off+p.L3Off:off+p.IPEnd]...)
		noff, nn, r := tn.Encap(buf, off, n, &p)
		if noff < 0 || nn < 0 || noff+nn > len(buf) {
			t.Fatalf("frame out of the buffer: off %d n %d (%d)", noff, nn, len(buf))
		}
		switch r {
		case OK:
			var q Packet
			if rr := Parse(buf[noff:noff+nn], &q); rr != OK || q.L4Proto != ProtoIPIP && q.L4Proto != ProtoIPv6 {
				t.Fatalf("outer parse %v proto %d", rr, q.L4Proto)
			}
			if !bytes.Equal(buf[noff+q.L4Off:noff+nn], innerIP) {
				t.Fatal("inner packet changed")
			}
			if q.IPVersion == 4 && naiveSum(buf[noff+14:noff+34]) != 0xffff {
				t.Fatal("outer checksum")
			}
			if nn > 14+tn.mtu {
				t.Fatalf("%d bytes over MTU %d", nn, tn.mtu)
			}
		case ReplyICMP:
			checkReply(t, buf[noff:noff+nn])
		case NoHeadroom, TooBig:
			if noff != off || nn != n {
				t.Fatal("frame moved on a drop")
			}
		default:
			t.Fatalf("Encap: %v", r)
		}
	})
}

// checkReply asserts that an ICMP reply frame has valid IP and ICMP checksums.
func checkReply(t *testing.T, out []byte) {
	t.Helper()
	l3 := 14
	if binary.BigEndian.Uint16(out[12:]) == EtherTypeVLAN {
		l3 = 18
	}
	if out[l3]>>4 == 4 {
		if naiveSum(out[l3:l3+20]) != 0xffff || naiveSum(out[l3+20:]) != 0xffff {
			t.Fatal("ICMP reply checksums")
		}
		return
	}
	ip := out[l3:]
	ph := append(append([]byte(nil), ip[8:40]...), 0, 0, ip[4], ip[5], 0, 0, 0, ProtoICMPv6)
	if len(ip) > 1280 || naiveSum(ph, ip[40:]) != 0xffff {
		t.Fatal("ICMPv6 reply length or checksum")
	}
}

func FuzzICMPTooBig(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint16(1400), uint8(100))
	}
	f.Fuzz(func(t *testing.T, b []byte, mtu uint16, room uint8) {
		buf := make([]byte, int(room)+len(b))
		off, n := int(room), len(b)
		copy(buf[off:], b)
		var p Packet
		if Parse(buf[off:off+n], &p) != OK {
			return
		}
		noff, nn, r := ICMPTooBig(buf, off, n, &p, int(mtu))
		if noff < 0 || nn < 0 || noff+nn > len(buf) {
			t.Fatalf("frame out of the buffer: off %d n %d (%d)", noff, nn, len(buf))
		}
		switch r {
		case ReplyICMP:
			checkReply(t, buf[noff:noff+nn])
		case TooBig, NoHeadroom:
		default:
			t.Fatalf("ICMPTooBig: %v", r)
		}
	})
}

func FuzzSetMACs(f *testing.F) {
	f.Add(mk(f, tcpSpec(false)))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		r := SetMACs(b, macReal, macLBOut)
		if len(b) < 14 {
			if r != Truncated || !bytes.Equal(b, orig) {
				t.Fatal("short frame")
			}
			return
		}
		if r != OK || !bytes.Equal(b[:6], macReal[:]) || !bytes.Equal(b[6:12], macLBOut[:]) || !bytes.Equal(b[12:], orig[12:]) {
			t.Fatal("SetMACs")
		}
	})
}

// FuzzForeignPacket hands every forwarding function a Packet parsed from another frame (a
// caller's bug): they may refuse or write nonsense into the frame, but never index out of it.
func FuzzForeignPacket(f *testing.F) {
	seeds := fuzzSeeds(f)
	for i, s := range seeds {
		f.Add(s, seeds[(i+1)%len(seeds)][:len(seeds[(i+1)%len(seeds)])/2+i])
	}
	tn := mustTunnel(f, "198.18.0.11", "198.18.128.0/17", 1300)
	tn6 := mustTunnel(f, "2001:db8:2::11", "2001:db8:3::/64", 1300)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var p Packet
		if Parse(a, &p) != OK {
			return
		}
		addr := netip.MustParseAddr("198.18.0.11")
		if p.Key.V6 {
			addr = netip.MustParseAddr("2001:db8:2::11")
		}
		for i := 0; i < 4; i++ {
			buf := make([]byte, 64+len(b))
			copy(buf[64:], b)
			pkt := buf[64:]
			var r Reason
			var off, n int
			switch i {
			case 0:
				r = NATToBackend(pkt, &p, addr, 8080)
			case 1:
				r = NATToClient(pkt, &p, addr, 80)
			case 2:
				off, n, r = tn.Encap(buf, 64, len(b), &p)
				if r == OK || r == ReplyICMP {
					_ = buf[off : off+n]
				}
				off, n, r = tn6.Encap(buf, 64, len(b), &p)
			case 3:
				off, n, r = ICMPTooBig(buf, 64, len(b), &p, 1280)
			}
			if r == OK || r == ReplyICMP {
				if off < 0 || n < 0 || off+n > len(buf) {
					t.Fatalf("case %d: frame out of the buffer: %d+%d > %d", i, off, n, len(buf))
				}
			}
		}
	})
}

// FuzzNAT4ToBackend holds the IPv4 rewrite's short path (natRewrite4, which
// NAT4ToBackend, and NATToBackend and NATToClient for an IPv4 address, call) to the general
// one (natGeneral), in both directions: the same verdict, the same bytes and the same Packet,
// on any packet Parse takes (an IPv6 one included, which both refuse).
func FuzzNAT4ToBackend(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint32(0xc612000b), uint16(8080))
	}
	f.Fuzz(func(t *testing.T, b []byte, a uint32, port uint16) {
		var p Packet
		if Parse(b, &p) != OK {
			return
		}
		var a4 [4]byte
		binary.BigEndian.PutUint32(a4[:], a)
		for _, dst := range []bool{true, false} {
			short, general := bytes.Clone(b), bytes.Clone(b)
			ps, pg := p, p
			var rs Reason
			if dst {
				rs = NAT4ToBackend(short, &ps, a4, port)
			} else {
				rs = natRewrite4(short, &ps, a4, port, false)
			}
			rg := natGeneral(general, &pg, netip.AddrFrom4(a4), port, dst)
			if rs != rg || !bytes.Equal(short, general) || ps != pg {
				t.Fatalf("dst %v: short path %v %x, general %v %x", dst, rs, short, rg, general)
			}
		}
	})
}

// FuzzTunnelIPIP4 holds Encap's short path (plain IPIP of an IPv4 packet from an IPv4
// source, with a fixed source and with the flow's hash in its host bits) to the general
// one: the same verdict, the same frame and the same bytes in the whole buffer, on any
// packet Parse takes, at any headroom and MTU.
func FuzzTunnelIPIP4(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0), uint16(1500), uint8(200))
	}
	tunnels := [2]Tunnel{
		mustTunnel(f, "198.18.0.11", "198.18.0.2/32", 1500),
		mustTunnel(f, "198.18.0.11", "198.18.128.0/17", 1500),
	}
	f.Fuzz(func(t *testing.T, b []byte, which uint8, mtu uint16, room uint8) {
		var p Packet
		if Parse(b, &p) != OK {
			return
		}
		short := tunnels[which%2]
		short.mtu = 68 + int(mtu)%1500
		if !short.ipip4 {
			t.Fatal("the tunnel does not take the short path")
		}
		general := short
		general.ipip4 = false // Encap's general path, as for every other tunnel
		bs := make([]byte, int(room)+len(b))
		bg := make([]byte, int(room)+len(b))
		off := int(room)
		copy(bs[off:], b)
		copy(bg[off:], b)
		ps, pg := p, p
		so, sn, sr := short.Encap(bs, off, len(b), &ps)
		gof, gn, gr := general.Encap(bg, off, len(b), &pg)
		if sr != gr || so != gof || sn != gn || !bytes.Equal(bs, bg) || ps != pg {
			t.Fatalf("short path %v (%d, %d) %x, general %v (%d, %d) %x", sr, so, sn, bs, gr, gof, gn, bg)
		}
	})
}
