package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/dataplane/xsk"
)

// stampOf finds the magic and the send time in every template, plain, behind an 802.1Q tag
// and inside IPIP, and nothing in a frame without them.
func TestStampOf(t *testing.T) {
	for _, tc := range []struct {
		proto Proto
		size  int
		timed bool
	}{{UDP, 64, true}, {TCPSYN, 64, false}, {TCPACK, 64, false}, {TCPACK, 594, true}, {UDP, 1518, true}} {
		tp := testTemplate(t, tc.proto, tc.size, 10)
		f := make([]byte, tp.Len())
		tp.Write(f, 3, 123456789)
		check := func(what string, f []byte) {
			magic, sent, timed := stampOf(f)
			if !magic || timed != tc.timed || (timed && sent != 123456789) {
				t.Errorf("%v/%d %s: magic %v timed %v sent %d", tc.proto, tc.size, what, magic, timed, sent)
			}
		}
		check("plain", f)
		vlan := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x00, 0x07), f[12:]...)
		check("802.1Q", vlan)
		outer := make([]byte, 20)
		outer[0], outer[9] = 0x45, 4
		check("IPIP", append(append(append([]byte{}, f[:14]...), outer...), f[14:]...))
		binary.BigEndian.PutUint32(f[tp.stampAt:], 0x12345678)
		if magic, _, _ := stampOf(f); magic {
			t.Errorf("%v/%d: magic found in a frame without it", tc.proto, tc.size)
		}
	}
	tp := testTemplate(t, UDP, 64, 1)
	f := make([]byte, tp.Len())
	tp.Write(f, 0, 1)
	if a := testing.AllocsPerRun(100, func() { stampOf(f) }); a != 0 {
		t.Errorf("stampOf allocates %v", a)
	}
}

func FuzzStampOf(f *testing.F) {
	tp := testTemplate(f, UDP, 64, 10)
	fr := make([]byte, tp.Len())
	tp.Write(fr, 3, 77)
	f.Add(fr)
	f.Add(fr[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		magic, _, timed := stampOf(frame)
		if timed && !magic {
			t.Fatal("a send time without the magic")
		}
	})
}

// A stream interleaves its templates in their shares: IMIX 7:4:1 and one SYN per nine ACKs,
// every combination present, each frame decodable with correct checksums.
func TestStreamMix(t *testing.T) {
	protos, err := ParseProtos("tcp-syn:1,tcp-ack:9")
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := ParseSizes("imix")
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStream(StreamConfig{Base: testTemplate(t, UDP, 64, 1000).Config(), Sizes: sizes, Protos: protos})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Templates) != 6 || len(st.Pattern) != 120 {
		t.Fatalf("%d templates, pattern of %d", len(st.Templates), len(st.Pattern))
	}
	bySize, byProto, combos := map[int]int{}, map[Proto]int{}, map[uint8]int{}
	for _, i := range st.Pattern {
		c := st.Templates[i].Config()
		bySize[c.Size]++
		byProto[c.Proto]++
		combos[i]++
	}
	if bySize[64] != 70 || bySize[594] != 40 || bySize[1518] != 10 || byProto[TCPSYN] != 12 || byProto[TCPACK] != 108 {
		t.Errorf("shares: sizes %v protocols %v", bySize, byProto)
	}
	if len(combos) != 6 {
		t.Errorf("%d of 6 combinations occur", len(combos))
	}
	// No long runs of one size: the 1518-byte frames are spread out.
	for k := range st.Pattern {
		if st.Templates[st.Pattern[k]].Config().Size == 1518 && st.Templates[st.Pattern[(k+1)%120]].Config().Size == 1518 {
			t.Fatalf("two 1518-byte frames in a row at %d", k)
		}
	}
	if m, want := st.Mean(), (7*64+4*594+1518)/12.0; m != want {
		t.Errorf("mean frame %.1f bytes, IMIX is %.1f", m, want)
	}
	for _, tp := range st.Templates {
		f := make([]byte, tp.Len())
		tp.Write(f, 5, 99)
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || tcp.SYN != (tp.Config().Proto == TCPSYN) || tcp.ACK != (tp.Config().Proto == TCPACK) {
			t.Errorf("%v: %v", tp.Config().Proto, p)
		}
	}
	for _, bad := range []string{"", "0", "64:0", "64:x", "x", "64,,128"} {
		if _, err := ParseSizes(bad); !errors.Is(err, ErrTemplate) {
			t.Errorf("ParseSizes(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "sctp", "udp:0", "tcp-syn:-1"} {
		if _, err := ParseProtos(bad); !errors.Is(err, ErrTemplate) {
			t.Errorf("ParseProtos(%q) = %v", bad, err)
		}
	}
}

func FuzzParseStream(f *testing.F) {
	f.Add("imix", "udp")
	f.Add("64:7,594:4,1518", "tcp-syn:1,tcp-ack:9")
	f.Fuzz(func(t *testing.T, sizes, protos string) {
		ss, err1 := ParseSizes(sizes)
		ps, err2 := ParseProtos(protos)
		if err1 != nil || err2 != nil {
			if (err1 != nil && !errors.Is(err1, ErrTemplate)) || (err2 != nil && !errors.Is(err2, ErrTemplate)) {
				t.Fatalf("errors %v, %v do not wrap ErrTemplate", err1, err2)
			}
			return
		}
		st, err := NewStream(StreamConfig{Base: testTemplate(t, UDP, 64, 10).Config(), Sizes: ss, Protos: ps})
		if err != nil {
			return
		}
		for _, i := range st.Pattern {
			if int(i) >= len(st.Templates) {
				t.Fatalf("pattern index %d of %d templates", i, len(st.Templates))
			}
		}
	})
}

// The control connection: a generator asks, the sink answers with its counts, latency
// histogram included; an unknown request gets an error and the connection ends.
func TestControl(t *testing.T) {
	var h Histogram
	for _, v := range []uint64{1000, 2000, 3000, 1 << 40} {
		h.Record(v)
	}
	want := SinkCounts{Port: PortInfo{Iface: "s0", Queues: 2}, BootID: "b", Frames: 9, Packets: 7, Bytes: 448,
		Latency: h.Wire()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ServeControl(ctx, l, func() SinkCounts { return want }) }()
	c, err := DialSink(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		got, err := c.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if got.Packets != 7 || got.Bytes != 448 || got.Port.Iface != "s0" || got.Latency.Histogram().Percentile(0.5) != h.Percentile(0.5) ||
			got.Latency.Histogram().Count() != 4 {
			t.Errorf("got %+v", got)
		}
	}
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte(`{"op":"reset"}` + "\n"))
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := raw.Read(buf)
	if !strings.Contains(string(buf[:n]), `unknown op \"reset\"`) {
		t.Errorf("reply to an unknown op: %q", buf[:n])
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeControl: %v", err)
	}
}

func FuzzControlRequest(f *testing.F) {
	f.Add([]byte(`{"op":"counts"}`))
	f.Add([]byte(`{"op":1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		op, err := parseRequest(line)
		if (err == nil) != (op == "counts") || (err != nil && !errors.Is(err, ErrControl)) {
			t.Fatalf("parseRequest(%q) = %q, %v", line, op, err)
		}
	})
}

// A histogram crosses the wire intact, and the difference of two snapshots is what was
// recorded in between.
func TestHistogramWireSub(t *testing.T) {
	var a Histogram
	for v := range uint64(1000) {
		a.Record(v * 997)
	}
	before := a.Wire().Histogram()
	for v := range uint64(500) {
		a.Record(1e6 + v)
	}
	d := a.Wire().Histogram()
	d.Sub(before)
	if d.Count() != 500 || d.Percentile(0) < 1e6 || d.Percentile(1) > 1e6+600 {
		t.Errorf("difference: %d values, min %v max %v", d.Count(), d.Percentile(0), d.Percentile(1))
	}
	w := a.Wire().Histogram()
	if w.Count() != a.Count() || w.Percentile(0.99) != a.Percentile(0.99) {
		t.Errorf("wire: %d/%v, want %d/%v", w.Count(), w.Percentile(0.99), a.Count(), a.Percentile(0.99))
	}
}

// The generator's per-frame work (take a frame, write or patch the stream's next template,
// account for what the ring took) allocates nothing, follows the stream's pattern and the
// flow sequence, and gives back what the ring refused.
func TestFramesBuild(t *testing.T) {
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	sizes, _ := ParseSizes("imix")
	st, err := NewStream(StreamConfig{Base: testTemplate(t, UDP, 64, 1000).Config(), Sizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	fr := &frames{u: u, st: st, fresh: make([]uint8, u.FrameCount()), flow: 10}
	var tx [genBatch]xsk.Desc
	n, _ := fr.build(tx[:], 1)
	if n != genBatch {
		t.Fatalf("built %d", n)
	}
	for i, d := range tx[:n] {
		want := st.Templates[st.Pattern[i%len(st.Pattern)]]
		f := u.Frame(d.Addr)[:d.Len]
		if int(d.Len) != want.Len() {
			t.Fatalf("frame %d: %d bytes, the pattern says %d", i, d.Len, want.Len())
		}
		src, port := want.Flow(uint64(10 + i))
		if got := binary.BigEndian.Uint16(f[34:]); got != port || [4]byte(f[26:30]) != src.As4() {
			t.Fatalf("frame %d: source port %d, want flow %d's %v:%d", i, got, 10+i, src, port)
		}
	}
	if b := fr.sent(tx[:n], 40); b == 0 || fr.flow != 50 || fr.seq != 40 || u.FreeFrames() != 256-40 {
		t.Fatalf("after 40 of %d taken: flow %d seq %d, %d frames free", n, fr.flow, fr.seq, u.FreeFrames())
	}
	allocs := testing.AllocsPerRun(50, func() {
		n, _ := fr.build(tx[:], 2)
		fr.sent(tx[:n], 0)
	})
	if allocs != 0 {
		t.Errorf("build allocates %v per batch", allocs)
	}
}
