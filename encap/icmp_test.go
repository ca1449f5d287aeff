package encap

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket/layers"
)

func TestICMPFragNeeded(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    pktSpec
	}{
		{"tcp", tcpSpec(false)},
		{"vlan options udp", pktSpec{vlan: true, ipOpts: true, df: true, proto: ProtoUDP, src: ip4Client, dst: ip4VIP, sport: 4000, dport: 9000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.payload = 1460 // with its headers, above 1480
			orig := mk(t, tc.s)
			buf, off, n := frame(orig, headroom)
			var p Packet
			if r := Parse(buf[off:off+n], &p); r != OK {
				t.Fatal(r)
			}
			if p.TotalLen <= 1480 {
				t.Fatalf("test packet too small: %d", p.TotalLen)
			}
			quote := append([]byte(nil), orig[p.L3Off:p.L4Off+8]...)
			tn := mustTunnel(t, "198.18.0.11", "198.18.0.2/32", 1500)
			noff, nn, r := tn.Encap(buf, off, n, &p)
			if r != ReplyICMP {
				t.Fatalf("Encap = %v, want ReplyICMP", r)
			}
			out := buf[noff : noff+nn]
			if nn != p.L3Off+20+8+len(quote) || noff+nn != off+p.L4Off+8 {
				t.Fatalf("reply off %d n %d", noff, nn)
			}
			g := decode(t, out)
			eth := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.DstMAC, macClient) || !bytes.Equal(eth.SrcMAC, macLB) {
				t.Errorf("macs not swapped: %v %v", eth.DstMAC, eth.SrcMAC)
			}
			if tc.s.vlan {
				q, ok := g.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
				if !ok || q.VLANIdentifier != 42 || q.Priority != 3 {
					t.Errorf("vlan tag lost: %+v", q)
				}
			}
			ip := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ip.SrcIP.Equal(ip4VIP) || !ip.DstIP.Equal(ip4Client) || ip.TTL != 64 || ip.Protocol != layers.IPProtocolICMPv4 || int(ip.Length) != 28+len(quote) || ip.IHL != 5 {
				t.Errorf("reply ipv4 %+v", ip)
			}
			ic := g.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if ic.TypeCode.Type() != 3 || ic.TypeCode.Code() != 4 || ic.Id != 0 || ic.Seq != 1480 {
				t.Errorf("icmp %v id %d mtu %d", ic.TypeCode, ic.Id, ic.Seq)
			}
			if !bytes.Equal(ic.Payload, quote) {
				t.Errorf("quote %x, want %x", ic.Payload, quote)
			}
			if verifyChecksums(t, g) != 2 {
				t.Error("expected the IPv4 and ICMP checksums")
			}
			// The reply parses as an ICMP error about the client's flow.
			var rp Packet
			if r := Parse(out, &rp); r != OK || !rp.ICMPError || rp.Key != key(ip4VIP, ip4Client, tc.s.dport, tc.s.sport, tc.s.proto) {
				t.Errorf("reply parse %v %+v", r, rp.Key)
			}
		})
	}
}

func TestICMPPacketTooBig(t *testing.T) {
	for _, tc := range []struct {
		name            string
		payload         int
		backend, source string
		mtu, wantMTU    int
	}{
		{"ip6ip6 large", 1500 - 40 - 20, "2001:db8:2::11", "2001:db8:3::2/128", 1500, 1460},
		{"6in4 small quote whole", 900, "198.18.0.11", "198.18.0.2/32", 900, 880},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tcpSpec(true)
			s.vlan = true
			s.payload = tc.payload
			orig := mk(t, s)
			buf, off, n := frame(orig, headroom)
			var p Packet
			if r := Parse(buf[off:off+n], &p); r != OK {
				t.Fatal(r)
			}
			wantQuote := orig[p.L3Off:p.IPEnd]
			if len(wantQuote) > 1232 {
				wantQuote = wantQuote[:1232]
			}
			wantQuote = append([]byte(nil), wantQuote...)
			tn := mustTunnel(t, tc.backend, tc.source, tc.mtu)
			noff, nn, r := tn.Encap(buf, off, n, &p)
			if r != ReplyICMP {
				t.Fatalf("Encap = %v, want ReplyICMP", r)
			}
			out := buf[noff : noff+nn]
			g := decode(t, out)
			eth := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.DstMAC, macClient) || !bytes.Equal(eth.SrcMAC, macLB) {
				t.Errorf("macs not swapped")
			}
			if q, ok := g.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); !ok || q.VLANIdentifier != 42 {
				t.Error("vlan tag lost")
			}
			ip := g.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if !ip.SrcIP.Equal(ip6VIP) || !ip.DstIP.Equal(ip6Client) || ip.HopLimit != 64 || ip.NextHeader != layers.IPProtocolICMPv6 || int(ip.Length) != 8+len(wantQuote) {
				t.Errorf("reply ipv6 %+v", ip)
			}
			if 40+int(ip.Length) > 1280 {
				t.Errorf("reply of %d bytes exceeds 1280", 40+int(ip.Length))
			}
			ic := g.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if ic.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || ic.TypeCode.Code() != 0 {
				t.Errorf("icmpv6 %v", ic.TypeCode)
			}
			body := ip.Payload
			if mtu := binary.BigEndian.Uint32(body[4:8]); int(mtu) != tc.wantMTU {
				t.Errorf("mtu %d, want %d", mtu, tc.wantMTU)
			}
			if !bytes.Equal(body[8:], wantQuote) {
				t.Error("quote differs from the original packet")
			}
			if verifyChecksums(t, g) != 1 {
				t.Error("expected the ICMPv6 checksum")
			}
		})
	}
}

func TestICMPTooBigRefused(t *testing.T) {
	big := func(s pktSpec) pktSpec { s.payload = 1600; return s }
	noDF := big(tcpSpec(false))
	noDF.df = false
	mcast := big(tcpSpec(false))
	mcast.src = net.IP{224, 0, 0, 5}
	mcast6 := big(tcpSpec(true))
	mcast6.src = net.ParseIP("ff02::1")
	for _, tc := range []struct {
		name string
		b    []byte
		room int
		want Reason
	}{
		{"ipv4 without DF", mk(t, noDF), headroom, TooBig},
		{"multicast source", mk(t, mcast), headroom, TooBig},
		{"ipv6 multicast source", mk(t, mcast6), headroom, TooBig},
		{"an icmp error", func() []byte {
			s := tcpSpec(false)
			s.src, s.dst = ip4VIP, ip4Client
			s.payload = 1600
			return icmpError(t, s, 3, 3, 1500)
		}(), headroom, TooBig},
		{"no headroom v4", mk(t, big(tcpSpec(false))), 27, NoHeadroom},
		{"no headroom v6", mk(t, big(tcpSpec(true))), 47, NoHeadroom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf, off, n := frame(tc.b, tc.room)
			var p Packet
			if r := Parse(buf[off:off+n], &p); r != OK {
				t.Fatal(r)
			}
			p.DF = p.DF && tc.name != "ipv4 without DF"
			before := append([]byte(nil), buf...)
			if _, _, r := ICMPTooBig(buf, off, n, &p, 1400); r != tc.want {
				t.Fatalf("ICMPTooBig = %v, want %v", r, tc.want)
			}
			if !bytes.Equal(before, buf) {
				t.Error("frame changed although no reply was built")
			}
		})
	}
	// Enough headroom at the edge works.
	buf, off, n := frame(mk(t, big(tcpSpec(false))), 28)
	var p Packet
	Parse(buf[off:off+n], &p)
	if _, _, r := ICMPTooBig(buf, off, n, &p, 1400); r != ReplyICMP {
		t.Errorf("28 bytes of headroom: %v", r)
	}
}

func TestICMPTooBigNonFirstFragment(t *testing.T) {
	b := ipv6Ext(t, []uint8{44}, 100, true)
	buf, off, n := frame(b, headroom)
	var p Packet
	if r := Parse(buf[off:off+n], &p); r != OK {
		t.Fatal(r)
	}
	if _, _, r := ICMPTooBig(buf, off, n, &p, 1280); r != TooBig {
		t.Errorf("non-first fragment: %v, want TooBig", r)
	}
}
