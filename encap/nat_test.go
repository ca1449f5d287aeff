package encap

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
)

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	if ip.To4() != nil {
		return a.Unmap()
	}
	return a
}

// TestNATMatchesGopacket rewrites packets built by gopacket and compares the result byte for
// byte with the packet gopacket builds, with full checksums, for the translated addresses.
func TestNATMatchesGopacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			for _, zero := range []bool{false, true} {
				if zero && (v6 || proto != ProtoUDP) {
					continue
				}
				cl, vip, real := ip4Client, ip4VIP, ip4Real
				if v6 {
					cl, vip, real = ip6Client, ip6VIP, ip6Real
				}
				s := pktSpec{v6: v6, proto: proto, df: true, src: cl, dst: vip, sport: 40000, dport: 80, payload: 77, udpZero: zero}
				name := map[bool]string{false: "v4", true: "v6"}[v6] + map[uint8]string{ProtoTCP: "tcp", ProtoUDP: "udp"}[proto] + map[bool]string{true: " zero checksum"}[zero]
				t.Run(name+" to backend", func(t *testing.T) {
					b := mk(t, s)
					var p Packet
					if r := Parse(b, &p); r != OK {
						t.Fatal(r)
					}
					if r := NATToBackend(b, &p, addrOf(real), 8080); r != OK {
						t.Fatal(r)
					}
					w := s
					w.dst, w.dport = real, 8080
					if want := mk(t, w); !bytes.Equal(b, want) {
						t.Errorf("got\n%x\nwant\n%x", b, want)
					}
					verifyChecksums(t, decode(t, b))
				})
				t.Run(name+" to client", func(t *testing.T) {
					r := s
					r.src, r.dst, r.sport, r.dport = real, cl, 8080, 40000
					b := mk(t, r)
					var p Packet
					if res := Parse(b, &p); res != OK {
						t.Fatal(res)
					}
					if res := NATToClient(b, &p, addrOf(vip), 80); res != OK {
						t.Fatal(res)
					}
					w := r
					w.src, w.sport = vip, 80
					if want := mk(t, w); !bytes.Equal(b, want) {
						t.Errorf("got\n%x\nwant\n%x", b, want)
					}
					verifyChecksums(t, decode(t, b))
				})
			}
		}
	}
}

func TestNATKeepPortAndFamily(t *testing.T) {
	s := tcpSpec(false)
	b := mk(t, s)
	var p Packet
	Parse(b, &p)
	if r := NATToBackend(b, &p, addrOf(ip6Real), 0); r != FamilyMismatch {
		t.Errorf("v6 address on a v4 packet: %v", r)
	}
	if r := NATToBackend(b, &p, addrOf(ip4Real), 0); r != OK {
		t.Fatal(r)
	}
	w := s
	w.dst = ip4Real
	if !bytes.Equal(b, mk(t, w)) {
		t.Error("port 0 must keep the port")
	}
	var empty Packet
	if r := NATToBackend(b, &empty, addrOf(ip4Real), 0); r != FamilyMismatch {
		t.Errorf("unparsed packet: %v", r)
	}
}

// TestNATRefusesInconsistent: an IPv4 TCP or UDP packet whose Packet does not describe it
// (each of the checks of the IPv4 fast path failing in turn) is refused and left as it was.
func TestNATRefusesInconsistent(t *testing.T) {
	for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
		s := tcpSpec(false)
		s.proto = proto
		orig := mk(t, s)
		var good Packet
		if r := Parse(orig, &good); r != OK || !good.HasL4 {
			t.Fatalf("parse: %v", r)
		}
		for _, tc := range []struct {
			name string
			f    func(*Packet)
			want Reason
		}{
			{"never parsed", func(p *Packet) { p.IPVersion = 0 }, FamilyMismatch},
			{"ipv6 header", func(p *Packet) { p.IPVersion = 6 }, Truncated},
			{"l3 offset", func(p *Packet) { p.L3Off = 12; p.TotalLen = p.IPEnd - p.L3Off }, Truncated},
			{"l4 inside the ip header", func(p *Packet) { p.L4Off = p.L3Off + 16 }, Truncated},
			{"ip end past the frame", func(p *Packet) { p.IPEnd = len(orig) + 1; p.TotalLen = p.IPEnd - p.L3Off }, Truncated},
			{"l4 header cut", func(p *Packet) { p.IPEnd = p.L4Off + 7; p.TotalLen = p.IPEnd - p.L3Off }, Truncated},
			{"total length", func(p *Packet) { p.TotalLen-- }, Truncated},
			{"icmp error", func(p *Packet) { p.ICMPError = true }, Truncated},
		} {
			p := good
			tc.f(&p)
			b := append([]byte(nil), orig...)
			if r := NATToBackend(b, &p, addrOf(ip4Real), 8080); r != tc.want {
				t.Errorf("proto %d, %s: %v, want %v", proto, tc.name, r, tc.want)
			}
			if !bytes.Equal(b, orig) {
				t.Errorf("proto %d, %s: the frame changed", proto, tc.name)
			}
		}
		if b := append([]byte(nil), orig...); NATToBackend(b, &good, addrOf(ip4Real), 8080) != OK {
			t.Errorf("proto %d: the unchanged Packet refused", proto)
		}
	}
}

// TestNATICMPError translates an ICMP error about a reply of the flow: the outer destination
// and the quoted packet's source go to the backend, every checksum follows.
func TestNATICMPError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inner pktSpec
		quote int
	}{
		{"v4 tcp short quote", pktSpec{proto: ProtoTCP, df: true, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 300}, 28},
		{"v4 tcp long quote", pktSpec{proto: ProtoTCP, df: true, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 300}, 120},
		{"v4 udp", pktSpec{proto: ProtoUDP, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 300}, 28},
		{"v4 udp zero checksum", pktSpec{proto: ProtoUDP, src: ip4VIP, dst: ip4Client, sport: 80, dport: 40000, payload: 300, udpZero: true}, 28},
		{"v6 tcp", pktSpec{v6: true, proto: ProtoTCP, src: ip6VIP, dst: ip6Client, sport: 80, dport: 40000, payload: 300}, 200},
		{"v6 udp", pktSpec{v6: true, proto: ProtoUDP, src: ip6VIP, dst: ip6Client, sport: 80, dport: 40000, payload: 300}, 48},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := icmpError(t, tc.inner, 3, 4, tc.quote)
			if tc.inner.v6 {
				b = icmpError(t, tc.inner, 2, 0, tc.quote)
			}
			var p Packet
			if r := Parse(b, &p); r != OK || !p.ICMPError {
				t.Fatalf("parse %v", r)
			}
			real := ip4Real
			if tc.inner.v6 {
				real = ip6Real
			}
			if r := NATToBackend(b, &p, addrOf(real), 8080); r != OK {
				t.Fatal(r)
			}
			w := tc.inner
			w.src, w.sport = real, 8080
			want := icmpError(t, w, 3, 4, tc.quote)
			if tc.inner.v6 {
				want = icmpError(t, w, 2, 0, tc.quote)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("got\n%x\nwant\n%x", b, want)
			}
			verifyChecksums(t, decode(t, b))
		})
	}
}

func TestNATNonFirstFragment(t *testing.T) {
	b := ipv6Ext(t, []uint8{44}, 100, false)
	orig := append([]byte(nil), b...)
	var p Packet
	Parse(b, &p)
	if r := NATToBackend(b, &p, addrOf(ip6Real), 8080); r != OK {
		t.Fatal(r)
	}
	copy(orig[14+24:], ip6Real.To16())
	if !bytes.Equal(b, orig) {
		t.Error("a non-first fragment must only get its address rewritten")
	}
}

// TestNATRandom runs NAT over random packets placed at every alignment and compares every
// checksum the incremental updates produced with a full recomputation by gopacket.
func TestNATRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	randIP := func(v6 bool) net.IP {
		if v6 {
			ip := make(net.IP, 16)
			for i := range ip {
				ip[i] = byte(rng.Uint32())
			}
			ip[0], ip[1] = 0x20, 0x01
			return ip
		}
		return net.IP{198, 18 + byte(rng.IntN(2)), byte(rng.Uint32()), byte(rng.Uint32())}
	}
	for iter := 0; iter < 1500; iter++ {
		v6 := rng.IntN(2) == 1
		proto := []uint8{ProtoTCP, ProtoUDP}[rng.IntN(2)]
		s := pktSpec{v6: v6, proto: proto, df: rng.IntN(2) == 1, vlan: rng.IntN(3) == 0, ipOpts: !v6 && rng.IntN(3) == 0,
			src: randIP(v6), dst: randIP(v6), sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()), payload: rng.IntN(300)}
		if s.sport == 53 || s.dport == 53 || s.sport == 0 || s.dport == 0 {
			continue
		}
		pkt := mk(t, s)
		align := iter % 8
		buf := make([]byte, len(pkt)+align)
		b := buf[align:]
		copy(b, pkt)
		var p Packet
		if r := Parse(b, &p); r != OK {
			t.Fatal(r)
		}
		if p.Key != key(s.src, s.dst, s.sport, s.dport, s.proto) {
			t.Fatalf("iter %d: key %+v for %+v", iter, p.Key, s)
		}
		to, port := randIP(v6), uint16(1+rng.IntN(65535))
		w := s
		if iter%2 == 0 {
			NATToBackend(b, &p, addrOf(to), port)
			w.dst, w.dport = to, port
		} else {
			NATToClient(b, &p, addrOf(to), port)
			w.src, w.sport = to, port
		}
		if want := mk(t, w); !bytes.Equal(b, want) {
			t.Fatalf("iter %d (%+v): got\n%x\nwant\n%x", iter, s, b, want)
		}
	}
}

func TestHeaderViews(t *testing.T) {
	b := mk(t, pktSpec{proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 9000, payload: 10})
	ip := IPv4(b[14:])
	if ip.HeaderLen() != 20 || ip.TotalLen() != 38 || ip.Protocol() != ProtoUDP || ip.TTL() != 61 ||
		ip.Src() != [4]byte(ip4Client.To4()) || ip.Dst() != [4]byte(ip4VIP.To4()) || ip.ComputeChecksum() != ip.Checksum() {
		t.Errorf("ipv4 view")
	}
	u := UDP(b[34:])
	if u.SrcPort() != 4000 || u.DstPort() != 9000 || u.Length() != 18 {
		t.Errorf("udp view")
	}
	ip.SetSrcWithChecksumUpdate([4]byte{198, 18, 7, 7})
	u.UpdatePseudoHeaderAddress(ip4Client.To4(), []byte{198, 18, 7, 7})
	u.SetSrcPortWithChecksumUpdate(4001)
	if ip.ComputeChecksum() != ip.Checksum() {
		t.Error("ipv4 checksum after SetSrcWithChecksumUpdate")
	}
	verifyChecksums(t, decode(t, b))
	b6 := mk(t, tcpSpec(true))
	h6 := IPv6(b6[14:])
	if h6.PayloadLen() != 120 || h6.NextHeader() != ProtoTCP || h6.HopLimit() != 61 || h6.Src() != [16]byte(ip6Client) || h6.Dst() != [16]byte(ip6VIP) {
		t.Error("ipv6 view")
	}
	tcp := TCP(b6[54:])
	if tcp.SrcPort() != 40000 || tcp.DstPort() != 80 || tcp.Flags() != TCPFlagSYN|TCPFlagACK {
		t.Error("tcp view")
	}
	old := h6.Dst()
	h6.SetDst([16]byte(ip6Real))
	tcp.UpdatePseudoHeaderAddress(old[:], ip6Real)
	tcp.SetDstPortWithChecksumUpdate(8080)
	old = h6.Src()
	h6.SetSrc([16]byte(ip6VIP))
	tcp.UpdatePseudoHeaderAddress(old[:], ip6VIP)
	tcp.SetSrcPortWithChecksumUpdate(80)
	if verifyChecksums(t, decode(t, b6)) != 1 || binary.BigEndian.Uint16(b6[54+2:]) != 8080 {
		t.Error("tcp after rewrites")
	}
}
