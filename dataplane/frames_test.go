package dataplane

import (
	"testing"

	"github.com/xlb-dev/xlb/dataplane/xsk"
)

func testUMEM(tb testing.TB, frames int) *xsk.UMEM {
	tb.Helper()
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 4096, FrameCount: frames})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { u.Close() })
	return u
}

// TestFramesOf: each received descriptor becomes its frame (the whole UMEM frame, the
// packet's offset and length, the interface, the address), what the engine set on the
// frame's last use is cleared, frames past the descriptors are left alone, and nothing
// allocates.
func TestFramesOf(t *testing.T) {
	u := testUMEM(t, 8)
	frames := make([]Frame, 4)
	for i := range frames {
		frames[i] = Frame{Off: 99, Len: 5, In: 2, Out: 7, Addr: 1, Why: 3}
	}
	descs := []xsk.Desc{{Addr: 256, Len: 60}, {Addr: 3*4096 + 256, Len: 1514}, {Addr: 5*4096 + 300, Len: 64}}
	framesOf(frames, descs, u, 9)
	for i, d := range descs {
		f, want := frames[i], u.Frame(d.Addr)
		if len(f.Buf) != 4096 || &f.Buf[0] != &want[0] || f.Off != int(d.Addr%4096) || f.Len != int(d.Len) ||
			f.In != 9 || f.Out != 0 || f.Addr != d.Addr || f.Why != 0 {
			t.Errorf("frame %d: buf %d bytes (same frame %v), off %d len %d in %d out %d addr %d why %d; descriptor %+v",
				i, len(f.Buf), len(f.Buf) > 0 && &f.Buf[0] == &want[0], f.Off, f.Len, f.In, f.Out, f.Addr, f.Why, d)
		}
	}
	if f := frames[3]; f.Out != 7 || f.Why != 3 || f.Off != 99 {
		t.Errorf("frame past the descriptors changed: %+v", f)
	}
	if n := testing.AllocsPerRun(100, func() { framesOf(frames, descs, u, 9) }); n != 0 {
		t.Errorf("%.0f allocs per call", n)
	}
}

// BenchmarkFramesOf: the worker's step from a batch of 64 received descriptors to the frames
// the engine takes, per frame.
func BenchmarkFramesOf(b *testing.B) {
	u := testUMEM(b, maxBatch)
	descs := make([]xsk.Desc, maxBatch)
	for i := range descs {
		descs[i] = xsk.Desc{Addr: uint64(i*4096 + 256), Len: 60}
	}
	frames := make([]Frame, maxBatch)
	b.ReportAllocs()
	for b.Loop() {
		framesOf(frames, descs, u, 3)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*maxBatch), "ns/pkt")
}
