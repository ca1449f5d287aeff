package bench

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// Histogram counts durations (nanoseconds) in log-linear buckets: exact below 32 ns, then 16
// buckets per power of two, so a percentile is within 1/16 (6.25%) of the true value. The
// zero value is ready to use; Record allocates nothing.
type Histogram struct {
	counts [64 * 16]uint64
	n      uint64
	max    uint64
}

const subBits = 4 // 16 sub-buckets per power of two

func bucketOf(v uint64) int {
	if v < 2<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [16, 32)
	return (e+1)<<subBits + int(v>>e) - 1<<subBits
}

// bucketHigh returns the largest value of bucket i.
func bucketHigh(i int) uint64 {
	if i < 2<<subBits {
		return uint64(i)
	}
	e := i>>subBits - 1
	m := uint64(i&(1<<subBits-1)) + 1<<subBits
	return (m+1)<<e - 1
}

// Record counts one value.
func (h *Histogram) Record(ns uint64) {
	i := bucketOf(ns)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, ns)
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Sub removes o's counts from h, where o is an earlier copy of h (counts only grow): h then
// holds what was recorded since. The largest value stays h's.
func (h *Histogram) Sub(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] -= min(c, h.counts[i])
	}
	h.n -= min(o.n, h.n)
}

// HistogramWire is a Histogram as it crosses the sink's control connection: the non-empty
// buckets by index, and the largest value.
type HistogramWire struct {
	Buckets map[int]uint64 `json:"buckets,omitempty"`
	Max     uint64         `json:"max,omitempty"`
}

// Wire returns h's wire form.
func (h *Histogram) Wire() HistogramWire {
	w := HistogramWire{Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			if w.Buckets == nil {
				w.Buckets = map[int]uint64{}
			}
			w.Buckets[i] = c
		}
	}
	return w
}

// Histogram returns the histogram of w (buckets out of range are ignored).
func (w HistogramWire) Histogram() *Histogram {
	h := &Histogram{max: w.Max}
	for i, c := range w.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i] += c
			h.n += c
		}
	}
	return h
}

// Percentile returns the value at or below which a fraction q (0..1) of the recorded values
// lie: the upper bound of its bucket (never more than the largest value recorded), or 0
// when nothing was recorded.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// Rate is a count of packets and bytes over a duration.
type Rate struct {
	Packets, Bytes uint64
	Elapsed        time.Duration
}

// PPS returns packets per second (0 for an empty duration).
func (r Rate) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Packets) / r.Elapsed.Seconds()
}

// BPS returns bits per second (0 for an empty duration).
func (r Rate) BPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds()
}

// Loss returns the fraction of offered packets that did not arrive (0 when nothing was
// offered; never negative).
func Loss(offered, received uint64) float64 {
	if offered == 0 || received >= offered {
		return 0
	}
	return float64(offered-received) / float64(offered)
}

// Summary is the median and range of repeated measurements.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median (the mean of the middle two for an even count), minimum and
// maximum of xs, ignoring NaNs.
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}
