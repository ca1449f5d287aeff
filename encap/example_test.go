package encap_test

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlb-dev/xlb/encap"
)

// clientFrame returns an AF_XDP-like frame: 256 bytes of headroom, then an Ethernet/IPv4/TCP
// SYN from 198.18.1.10:40000 to the VIP 198.19.0.10:80 with payload bytes of data and DF set.
func clientFrame(payload int) (buf []byte, off, n int) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{198, 18, 1, 10}, DstIP: net.IP{198, 19, 0, 10}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, tcp, gopacket.Payload(make([]byte, payload)))
	buf = make([]byte, 2048)
	n = copy(buf[256:], sb.Bytes())
	return buf, 256, n
}

func addr(b [16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

func Example_parse() {
	buf, off, n := clientFrame(10)
	var p encap.Packet // one per worker, reused for every packet
	if r := encap.Parse(buf[off:off+n], &p); r != encap.OK {
		fmt.Println("drop:", r) // count r in a per-worker [encap.NumReasons]uint64
		return
	}
	k := p.Key
	fmt.Printf("%v:%d -> %v:%d proto %d syn %v\n", addr(k.Src, k.V6), k.SrcPort, addr(k.Dst, k.V6), k.DstPort, k.Proto, p.SYN())
	fmt.Println("l3", p.L3Off, "l4", p.L4Off, "ttl", p.TTL, "df", p.DF, "len", p.TotalLen)
	// Output:
	// 198.18.1.10:40000 -> 198.19.0.10:80 proto 6 syn true
	// l3 14 l4 34 ttl 64 df true len 50
}

func Example_parseMalformed() {
	var p encap.Packet
	fmt.Println(encap.Parse([]byte{1, 2, 3}, &p))
	// Output: truncated
}

func ExampleTunnel_Encap() {
	tn, err := encap.NewTunnel(encap.TunnelConfig{
		DstMAC:  [6]byte{2, 0, 0, 0, 0, 3},
		SrcMAC:  [6]byte{2, 0, 0, 0, 0, 4},
		Backend: netip.MustParseAddr("198.18.0.11"),
		Source:  netip.MustParsePrefix("198.18.128.0/17"), // per-flow outer source
		MTU:     1500,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	buf, off, n := clientFrame(10)
	var p encap.Packet
	encap.Parse(buf[off:off+n], &p)
	off2, n2, r := tn.Encap(buf, off, n, &p)
	fmt.Println(r, "grew by", n2-n, "moved front by", off-off2)

	var outer encap.Packet
	encap.Parse(buf[off2:off2+n2], &outer)
	fmt.Println("outer proto", outer.L4Proto, "ttl", outer.TTL, "df", outer.DF, "to", addr(outer.Key.Dst, false))
	// Output:
	// ok grew by 20 moved front by 20
	// outer proto 4 ttl 64 df true to 198.18.0.11
}

func ExampleTunnel_Encap_fragmentationNeeded() {
	tn, _ := encap.NewTunnel(encap.TunnelConfig{
		Backend: netip.MustParseAddr("198.18.0.11"),
		Source:  netip.MustParsePrefix("198.18.0.2/32"),
		MTU:     1500,
	})
	buf, off, n := clientFrame(1460) // a 1500-byte IP packet with DF: 1520 once encapsulated
	var p encap.Packet
	encap.Parse(buf[off:off+n], &p)
	off, n, r := tn.Encap(buf, off, n, &p)
	fmt.Println(r) // transmit the frame back where it came from

	var reply encap.Packet
	encap.Parse(buf[off:off+n], &reply)
	ip := encap.IPv4(buf[off+reply.L3Off:])
	fmt.Println("icmp", reply.ICMPType, reply.ICMPCode, "from", netip.AddrFrom4(ip.Src()), "to", netip.AddrFrom4(ip.Dst()), "size", reply.TotalLen)
	// Output:
	// reply_icmp
	// icmp 3 4 from 198.19.0.10 to 198.18.1.10 size 56
}

func ExampleNATToBackend() {
	buf, off, n := clientFrame(10)
	pkt := buf[off : off+n]
	var p encap.Packet
	encap.Parse(pkt, &p)
	encap.NATToBackend(pkt, &p, netip.MustParseAddr("198.18.0.11"), 8080)
	encap.SetMACs(pkt, [6]byte{2, 0, 0, 0, 0, 3}, [6]byte{2, 0, 0, 0, 0, 4})

	encap.Parse(pkt, &p)
	fmt.Printf("to %v:%d\n", addr(p.Key.Dst, false), p.Key.DstPort)
	// Output: to 198.18.0.11:8080
}

func ExampleReason_String() {
	var counters [encap.NumReasons]uint64
	counters[encap.BadIHL]++
	for r, c := range counters {
		if c > 0 {
			fmt.Printf("encap_drops_total{reason=%q} %d\n", encap.Reason(r), c)
		}
	}
	// Output: encap_drops_total{reason="bad_ihl"} 1
}
