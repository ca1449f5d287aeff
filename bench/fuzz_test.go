package bench

import (
	"net/netip"
	"testing"
)

// FuzzSinkCheck feeds arbitrary frames to the checking sink: it never panics, and a frame is
// counted exactly once (good, bad or other).
func FuzzSinkCheck(f *testing.F) {
	tp := testTemplate(f, UDP, 64, 10)
	fr := make([]byte, tp.Len())
	tp.Write(fr, 3, 77)
	f.Add(fr, false)
	tt := testTemplate(f, TCPSYN, 200, 10)
	fr2 := make([]byte, tt.Len())
	tt.Write(fr2, 1, 5)
	f.Add(fr2, true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, frame []byte, ipip bool) {
		e := &Expect{SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMACs: [][6]byte{{2, 0, 0, 0, 0, 2}},
			IPIP: ipip, OuterSrc: netip.MustParseAddr("198.18.0.2"),
			Dsts: []netip.Addr{netip.MustParseAddr("198.18.0.100")}}
		s := newSink(e)
		s.check(frame, 1000)
		if n := s.res.Received() + s.res.Other; n != 1 {
			t.Fatalf("frame counted %d times", n)
		}
	})
}

func TestSinkCheck(t *testing.T) {
	tp := testTemplate(t, UDP, 64, 10)
	f := make([]byte, tp.Len())
	e := &Expect{SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMACs: [][6]byte{{2, 0, 0, 0, 0, 9}, {2, 0, 0, 0, 0, 2}},
		Dsts: []netip.Addr{netip.MustParseAddr("198.18.0.100")}, SpreadByMAC: true}
	s := newSink(e)
	tp.Write(f, 1, 400)
	s.check(f, 1000)
	if s.res.Good != 1 || s.res.Spread[1] != 1 || s.res.Latency.Percentile(0.5) != 600 {
		t.Fatalf("good frame: %+v p50 %v", s.res.Bad, s.res.Latency.Percentile(0.5))
	}
	for name, c := range map[string]struct {
		mod func([]byte)
		bad Bad
	}{
		"src mac":  {func(b []byte) { b[11] = 7 }, BadSrcMAC},
		"dst mac":  {func(b []byte) { b[5] = 7 }, BadDstMAC},
		"checksum": {func(b []byte) { b[14+8]-- }, BadChecksum},
		"dst":      {func(b []byte) { b[14+19] = 1; fixIP(b) }, BadDst},
		"payload":  {func(b []byte) { b[42] = 0 }, BadPayload},
		"encap":    {func(b []byte) { b[14+9] = 4; fixIP(b) }, BadEncap},
		"short":    {func(b []byte) { b[14] = 0x4f }, BadShort},
	} {
		tp.Write(f, 1, 400)
		c.mod(f)
		s := newSink(e)
		s.check(f, 1000)
		if s.res.Bad[c.bad] != 1 || s.res.Good != 0 {
			t.Errorf("%s: bad %v, want %v", name, s.res.Bad, c.bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.check(f, 1000) }); n != 0 {
		t.Errorf("check allocates %v", n)
	}
}

// fixIP recomputes the IPv4 header checksum of frame b.
func fixIP(b []byte) {
	b[24], b[25] = 0, 0
	c := ^fold(sum16(b[14:34]))
	b[24], b[25] = byte(c>>8), byte(c)
}
