package bench

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func testTemplate(t testing.TB, proto Proto, size, flows int) *Template {
	t.Helper()
	tp, err := NewTemplate(TemplateConfig{Proto: proto, Size: size, Flows: flows,
		SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0, 0, 0, 0, 2},
		Dst: netip.MustParseAddr("198.18.0.100"), DstPort: 9000, SrcPool: netip.MustParsePrefix("198.19.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// decode parses f with gopacket and checks both checksums against gopacket's own.
func decode(t *testing.T, f []byte) (*layers.IPv4, gopacket.Packet) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		t.Fatal("no IPv4 layer")
	}
	// Recompute with gopacket and compare.
	ipc := *ip
	buf := gopacket.NewSerializeBuffer()
	if err := ipc.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := ip.Checksum, ipc.Checksum; got != want {
		t.Errorf("ip checksum %#04x, gopacket computes %#04x", got, want)
	}
	var l4 interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		gopacket.SerializableLayer
	}
	var got uint16
	var payload []byte
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		c := *u
		l4, got, payload = &c, u.Checksum, u.Payload
		defer func() {
			if c.Checksum != got {
				t.Errorf("udp checksum %#04x, gopacket computes %#04x", got, c.Checksum)
			}
		}()
	} else if tc, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		if tc.SYN == tc.ACK { // a SYN or an ACK template, never both or neither
			t.Errorf("tcp flags: syn %v ack %v", tc.SYN, tc.ACK)
		}
		c := *tc
		l4, got, payload = &c, tc.Checksum, tc.Payload
		defer func() {
			if c.Checksum != got {
				t.Errorf("tcp checksum %#04x, gopacket computes %#04x", got, c.Checksum)
			}
		}()
	} else {
		t.Fatal("no L4 layer")
	}
	if err := l4.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf = gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, l4,
		gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return ip, p
}

func TestTemplateFrames(t *testing.T) {
	for _, tc := range []struct {
		proto Proto
		size  int
		stamp bool
	}{{UDP, 64, true}, {UDP, 1500, true}, {TCPSYN, 64, false}, {TCPSYN, 1500, true}, {UDP, 1518, true},
		{TCPACK, 64, false}, {TCPACK, 594, true}} {
		tp := testTemplate(t, tc.proto, tc.size, 100000)
		if tp.Len() != tc.size-4 || tp.HasStamp() != tc.stamp {
			t.Fatalf("%v/%d: len %d stamp %v", tc.proto, tc.size, tp.Len(), tp.HasStamp())
		}
		seen := map[string]bool{}
		f := make([]byte, tp.Len())
		for _, flow := range []uint64{0, 1, 63999, 64000, 99999, 100000, 12345} {
			tp.Write(f, flow, 0xfedcba9876543210+flow)
			ip, p := decode(t, f)
			src, port := tp.Flow(flow)
			var sport uint16
			if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
				sport = uint16(u.SrcPort)
			} else {
				sport = uint16(p.Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort)
			}
			if got, _ := netip.AddrFromSlice(ip.SrcIP); got != src || sport != port {
				t.Errorf("flow %d: frame from %v:%d, Flow says %v:%d", flow, got, sport, src, port)
			}
			if !netip.MustParsePrefix("198.19.0.0/16").Contains(src) || ip.DstIP.String() != "198.18.0.100" {
				t.Errorf("flow %d: %v -> %v outside the pools", flow, src, ip.DstIP)
			}
			seen[netip.AddrPortFrom(src, port).String()] = true
		}
		if len(seen) != 6 { // flow 100000 wraps to flow 0
			t.Errorf("%v/%d: %d distinct flows of 7 (one wraps), want 6", tc.proto, tc.size, len(seen))
		}
		// Patch over a frame of another flow gives the same bytes as Write.
		g := make([]byte, tp.Len())
		tp.Write(g, 777, 42)
		tp.Patch(f, 777, 42)
		if string(f) != string(g) {
			t.Errorf("%v/%d: Patch and Write differ", tc.proto, tc.size)
		}
	}
}

func TestTemplateFlowsDistinct(t *testing.T) {
	tp := testTemplate(t, UDP, 64, 1<<20)
	seen := make(map[netip.AddrPort]struct{}, 1<<20)
	for i := range uint64(1 << 20) {
		a, p := tp.Flow(i)
		seen[netip.AddrPortFrom(a, p)] = struct{}{}
	}
	if len(seen) != 1<<20 {
		t.Fatalf("%d distinct flows of %d", len(seen), 1<<20)
	}
}

func TestTemplateErrors(t *testing.T) {
	good := TemplateConfig{Size: 64, Flows: 1, Dst: netip.MustParseAddr("198.18.0.100"),
		SrcPool: netip.MustParsePrefix("198.19.0.0/16")}
	for name, mod := range map[string]func(*TemplateConfig){
		"small":     func(c *TemplateConfig) { c.Size = 63 },
		"big":       func(c *TemplateConfig) { c.Size = 1519 },
		"dst":       func(c *TemplateConfig) { c.Dst = netip.MustParseAddr("10.0.0.1") },
		"dst6":      func(c *TemplateConfig) { c.Dst = netip.MustParseAddr("2001:2::1") },
		"pool":      func(c *TemplateConfig) { c.SrcPool = netip.MustParsePrefix("10.0.0.0/16") },
		"wide pool": func(c *TemplateConfig) { c.SrcPool = netip.MustParsePrefix("198.16.0.0/14") },
		"no flows":  func(c *TemplateConfig) { c.Flows = 0 },
		"too many":  func(c *TemplateConfig) { c.SrcPool = netip.MustParsePrefix("198.19.0.0/30"); c.Flows = 128001 },
	} {
		c := good
		mod(&c)
		if _, err := NewTemplate(c); !errors.Is(err, ErrTemplate) {
			t.Errorf("%s: err %v, want ErrTemplate", name, err)
		}
	}
	if _, err := NewTemplate(good); err != nil {
		t.Fatal(err)
	}
}

func TestPatchAllocs(t *testing.T) {
	tp := testTemplate(t, UDP, 64, 1000)
	f := make([]byte, tp.Len())
	tp.Write(f, 0, 0)
	var i uint64
	if n := testing.AllocsPerRun(100, func() { i++; tp.Patch(f, i, i) }); n != 0 {
		t.Fatalf("Patch allocates %v per run", n)
	}
}

func BenchmarkPatch(b *testing.B) {
	tp := testTemplate(b, UDP, 64, 1<<20)
	f := make([]byte, tp.Len())
	tp.Write(f, 0, 0)
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		tp.Patch(f, i, i)
	}
}

// TestPatchChecksumsRandom checks Patch against a naive full computation (RFC 1071 over the
// IPv4 header, and over the pseudo header and segment) for random flows and stamps.
func TestPatchChecksumsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for _, c := range []struct {
		proto Proto
		size  int
	}{{UDP, 64}, {UDP, 1001}, {TCPSYN, 64}, {TCPSYN, 1518}, {TCPACK, 64}, {TCPACK, 1001}} {
		tp := testTemplate(t, c.proto, c.size, 1<<22)
		f := make([]byte, tp.Len())
		tp.Write(f, 0, 0)
		for range 2000 {
			tp.Patch(f, r.Uint64(), r.Uint64())
			ip := f[14:34]
			if naive(ip) != 0 {
				t.Fatalf("%v/%d: ip header does not verify", c.proto, c.size)
			}
			total := int(ip[2])<<8 | int(ip[3])
			seg := f[34 : 14+total]
			pseudo := append(append([]byte{}, ip[12:20]...), 0, ip[9], byte(len(seg)>>8), byte(len(seg)))
			if got := naive(append(pseudo, seg...)); got != 0 {
				t.Fatalf("%v/%d: l4 checksum does not verify (%#04x)", c.proto, c.size, got)
			}
		}
	}
}

// naive is the RFC 1071 checksum of b computed the slow way: 0 when b holds a correct one.
func naive(b []byte) uint16 {
	var s uint64
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
