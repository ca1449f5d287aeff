package encap

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Test addresses: IPv4 from 198.18.0.0/15, IPv6 from the documentation prefix. Nothing is sent.
var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macLB     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macReal   = [6]byte{0x02, 0, 0, 0, 0, 0x03}
	macLBOut  = [6]byte{0x02, 0, 0, 0, 0, 0x04}

	ip4Client = net.IP{198, 18, 1, 10}
	ip4VIP    = net.IP{198, 19, 0, 10}
	ip4Real   = net.IP{198, 18, 0, 11}
	ip6Client = net.ParseIP("2001:db8:1::10")
	ip6VIP    = net.ParseIP("2001:db8:f::10")
	ip6Real   = net.ParseIP("2001:db8:2::11")
)

const headroom = 256

// frame copies pkt into a 2048-byte AF_XDP-like frame after headroom bytes.
func frame(pkt []byte, room int) (buf []byte, off, n int) {
	buf = make([]byte, 2048)
	copy(buf[room:], pkt)
	return buf, room, len(pkt)
}

// build serializes the layers with lengths and checksums computed by gopacket.
func build(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		switch x := l.(type) {
		case *layers.TCP:
			x.SetNetworkLayerForChecksum(netLayer(ls))
		case *layers.UDP:
			x.SetNetworkLayerForChecksum(netLayer(ls))
		case *layers.ICMPv6:
			x.SetNetworkLayerForChecksum(netLayer(ls))
		}
	}
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), sb.Bytes()...)
}

func netLayer(ls []gopacket.SerializableLayer) gopacket.NetworkLayer {
	var last gopacket.NetworkLayer
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			last = n
		}
	}
	return last
}

type pktSpec struct {
	v6      bool
	proto   uint8 // ProtoTCP, ProtoUDP, ProtoICMP(v6)
	vlan    bool
	df      bool
	src     net.IP
	dst     net.IP
	sport   uint16
	dport   uint16
	payload int
	ipOpts  bool // IPv4: add a 4-byte option (NOP NOP NOP EOL)
	udpZero bool // UDP over IPv4 without checksum
}

func tcpSpec(v6 bool) pktSpec {
	s := pktSpec{v6: v6, proto: ProtoTCP, df: true, src: ip4Client, dst: ip4VIP, sport: 40000, dport: 80, payload: 100}
	if v6 {
		s.src, s.dst = ip6Client, ip6VIP
	}
	return s
}

// mk builds a frame from a spec with gopacket.
func mk(t testing.TB, s pktSpec) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macLB, EthernetType: layers.EthernetTypeIPv4}
	if s.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	if s.vlan {
		ls = append(ls, &layers.Ethernet{SrcMAC: macClient, DstMAC: macLB, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 42, Priority: 3, Type: eth.EthernetType})
	} else {
		ls = append(ls, eth)
	}
	var l4 layers.IPProtocol
	switch s.proto {
	case ProtoTCP:
		l4 = layers.IPProtocolTCP
	case ProtoUDP:
		l4 = layers.IPProtocolUDP
	case ProtoICMP:
		l4 = layers.IPProtocolICMPv4
	case ProtoICMPv6:
		l4 = layers.IPProtocolICMPv6
	}
	if s.v6 {
		ls = append(ls, &layers.IPv6{Version: 6, TrafficClass: 0x28, FlowLabel: 0x12345, NextHeader: l4, HopLimit: 61, SrcIP: s.src, DstIP: s.dst})
	} else {
		ip := &layers.IPv4{Version: 4, TOS: 0x28, Id: 0x1234, TTL: 61, Protocol: l4, SrcIP: s.src, DstIP: s.dst}
		if s.df {
			ip.Flags = layers.IPv4DontFragment
		}
		if s.ipOpts {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		ls = append(ls, ip)
	}
	switch s.proto {
	case ProtoTCP:
		ls = append(ls, &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: 7, Ack: 9, SYN: true, ACK: true, Window: 5000})
	case ProtoUDP:
		ls = append(ls, &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)})
	case ProtoICMP:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 5, Seq: 6})
	case ProtoICMPv6:
		ls = append(ls, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, gopacket.Payload([]byte{0, 5, 0, 6}))
	}
	pl := make([]byte, s.payload)
	for i := range pl {
		pl[i] = byte(i*7 + 3)
	}
	ls = append(ls, gopacket.Payload(pl))
	b := build(t, ls...)
	if s.udpZero {
		p := decode(t, b)
		u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		off := len(b) - len(u.Contents) - len(u.Payload)
		b[off+6], b[off+7] = 0, 0
	}
	return b
}

// decode decodes a frame with gopacket and fails on any decoding error.
func decode(t testing.TB, b []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("gopacket: %v", e.Error())
	}
	return p
}

// naiveSum is the reference ones' complement sum: 16-bit words, end-around carry, one by one.
func naiveSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// verifyChecksums checks, with the naive reference sum, every IPv4 header checksum and every
// TCP, UDP, ICMP and ICMPv6 checksum of the frame's transport directly behind an IP header, at
// any depth (outer and inner headers of a tunnel). It returns how many it checked.
func verifyChecksums(t testing.TB, p gopacket.Packet) int {
	t.Helper()
	checked := 0
	for _, l := range p.Layers() {
		var src, dst net.IP
		var proto uint8
		var seg []byte
		switch x := l.(type) {
		case *layers.IPv4:
			if s := naiveSum(x.Contents); s != 0xffff {
				t.Errorf("IPv4 %v->%v header checksum %#04x wrong (sum %#04x)", x.SrcIP, x.DstIP, x.Checksum, s)
			}
			checked++
			if x.Flags&layers.IPv4MoreFragments != 0 || x.FragOffset != 0 {
				continue
			}
			src, dst, proto, seg = x.SrcIP, x.DstIP, uint8(x.Protocol), x.Payload
		case *layers.IPv6:
			src, dst, proto, seg = x.SrcIP, x.DstIP, uint8(x.NextHeader), x.Payload
		default:
			continue
		}
		switch proto {
		case ProtoTCP, ProtoICMPv6:
			if s := naiveSum(pseudoHdr(src, dst, proto, len(seg)), seg); s != 0xffff {
				t.Errorf("proto %d checksum wrong over %v->%v (sum %#04x)", proto, src, dst, s)
			}
		case ProtoUDP:
			if binary.BigEndian.Uint16(seg[6:8]) == 0 && src.To4() != nil {
				break
			}
			if s := naiveSum(pseudoHdr(src, dst, proto, len(seg)), seg); s != 0xffff {
				t.Errorf("UDP checksum wrong over %v->%v (sum %#04x)", src, dst, s)
			}
		case ProtoICMP:
			if s := naiveSum(seg); s != 0xffff {
				t.Errorf("ICMP checksum wrong (sum %#04x)", s)
			}
		default:
			continue
		}
		checked++
	}
	return checked
}

func pseudoHdr(src, dst net.IP, proto uint8, n int) []byte {
	var b []byte
	if v4 := src.To4(); v4 != nil {
		b = append(append(b, v4...), dst.To4()...)
	} else {
		b = append(append(b, src.To16()...), dst.To16()...)
	}
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
}
