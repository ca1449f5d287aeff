package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramExactSmall(t *testing.T) {
	var h Histogram
	for v := range uint64(10) {
		h.Record(v + 1) // 1..10
	}
	for q, want := range map[float64]time.Duration{0.1: 1, 0.5: 5, 0.9: 9, 0.95: 10, 1: 10, 0: 1} {
		if got := h.Percentile(q); got != want {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
	var empty Histogram
	if empty.Percentile(0.5) != 0 || empty.Count() != 0 {
		t.Error("empty histogram")
	}
}

func TestHistogramRelativeError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vs []uint64
	for range 100000 {
		v := uint64(math.Exp(r.Float64()*20)) + 1 // 1ns .. ~0.5s, log-uniform
		vs = append(vs, v)
		h.Record(v)
	}
	slices.Sort(vs)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := float64(vs[int(math.Ceil(q*float64(len(vs))))-1])
		got := float64(h.Percentile(q))
		if got < exact || got > exact*(1+1.0/16)+1 {
			t.Errorf("p%v = %v, exact %v (want within +6.25%%)", q*100, got, exact)
		}
	}
	var h2 Histogram
	h2.Merge(&h)
	h2.Merge(&h)
	if h2.Count() != 200000 || h2.Percentile(0.5) != h.Percentile(0.5) {
		t.Errorf("merge: count %d p50 %v vs %v", h2.Count(), h2.Percentile(0.5), h.Percentile(0.5))
	}
}

func TestBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		b := bucketOf(v)
		if b < prev || b > prev+1 {
			t.Fatalf("bucket of %d is %d after %d", v, b, prev)
		}
		if v > bucketHigh(b) || (b > 0 && v <= bucketHigh(b-1)) {
			t.Fatalf("%d in bucket %d [%d, %d]", v, b, bucketHigh(b-1)+1, bucketHigh(b))
		}
		prev = b
	}
	if b := bucketOf(math.MaxUint64); b >= 64*16 {
		t.Fatalf("max bucket %d", b)
	}
}

func TestRecordAllocs(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Record(12345) }); n != 0 {
		t.Fatalf("Record allocates %v", n)
	}
}

func TestRate(t *testing.T) {
	r := Rate{Packets: 1_000_000, Bytes: 64_000_000, Elapsed: 500 * time.Millisecond}
	if r.PPS() != 2e6 || r.BPS() != 1.024e9 {
		t.Errorf("pps %v bps %v", r.PPS(), r.BPS())
	}
	if (Rate{Packets: 5}).PPS() != 0 || (Rate{Bytes: 5}).BPS() != 0 {
		t.Error("zero duration must give 0")
	}
	for _, c := range []struct {
		off, rcv uint64
		want     float64
	}{{100, 75, 0.25}, {0, 0, 0}, {10, 12, 0}, {4, 0, 1}} {
		if got := Loss(c.off, c.rcv); got != c.want {
			t.Errorf("Loss(%d, %d) = %v, want %v", c.off, c.rcv, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{3, 1, 2})
	if s.Median != 2 || s.Min != 1 || s.Max != 3 || s.N != 3 {
		t.Errorf("%+v", s)
	}
	s = Summarize([]float64{4, 1, math.NaN(), 2, 10})
	if s.Median != 3 || s.Min != 1 || s.Max != 10 || s.N != 4 {
		t.Errorf("even: %+v", s)
	}
	if s := Summarize(nil); !math.IsNaN(s.Median) || s.N != 0 {
		t.Errorf("empty: %+v", s)
	}
}
