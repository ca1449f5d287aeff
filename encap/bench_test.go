package encap

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The benchmarks share one packet: Ethernet/IPv4/TCP SYN+ACK, 100 bytes of payload, in a
// 2048-byte frame with 256 bytes of headroom, as a worker sees it.

func benchFrame(b *testing.B) ([]byte, int, int) {
	return frame(mk(b, tcpSpec(false)), headroom)
}

// BenchmarkParse: encap.Parse alone.
func BenchmarkParse(b *testing.B) {
	buf, off, n := benchFrame(b)
	pkt := buf[off : off+n]
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		if Parse(pkt, &p) != OK {
			b.Fatal("parse")
		}
	}
}

// BenchmarkParseIPIP: Parse, then IPIP encapsulation into the headroom with a per-flow outer
// source. Encap overwrites the original Ethernet header (the outer header ends where the inner
// IP header starts), so each iteration first restores those 14 bytes (a 14-byte copy, included
// in the figure), lest the next Parse read the outer header instead.
func BenchmarkParseIPIP(b *testing.B) {
	buf, off, n := benchFrame(b)
	var eth [14]byte
	copy(eth[:], buf[off:off+14])
	tn := mustTunnel(b, "198.18.0.11", "198.18.128.0/17", 1500)
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[off:off+14], eth[:])
		if Parse(buf[off:off+n], &p) != OK {
			b.Fatal("parse")
		}
		if _, _, r := tn.Encap(buf, off, n, &p); r != OK {
			b.Fatal(r)
		}
	}
}

// BenchmarkParseNAT: Parse, then the NAT rewrite towards a backend (address, port, IPv4 and TCP
// checksums) and the MAC rewrite.
func BenchmarkParseNAT(b *testing.B) {
	buf, off, n := benchFrame(b)
	pkt := buf[off : off+n]
	real := netip.MustParseAddr("198.18.0.11")
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		if Parse(pkt, &p) != OK {
			b.Fatal("parse")
		}
		if NATToBackend(pkt, &p, real, 8080) != OK || SetMACs(pkt, macReal, macLBOut) != OK {
			b.Fatal("nat")
		}
	}
}

// BenchmarkGopacketDecodingLayerParser is the baseline: gopacket's fastest decoder (preallocated
// layers, no packet object) on the same frame, Ethernet/IPv4/TCP, parse only.
func BenchmarkGopacketDecodingLayerParser(b *testing.B) {
	buf, off, n := benchFrame(b)
	pkt := buf[off : off+n]
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		tcp     layers.TCP
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp, &payload)
	decoded := make([]gopacket.LayerType, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		if err := parser.DecodeLayers(pkt, &decoded); err != nil || len(decoded) != 4 {
			b.Fatal(err, decoded)
		}
	}
}
