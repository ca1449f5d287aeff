package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// CountsFunc reads a sink's counts: a SinkClient's Counts over the control connection, or
// a Sink's in the same process.
type CountsFunc func() (SinkCounts, error)

// Trial is one run of the generator at one rate, with the sink's counts around it.
type Trial struct {
	Rate     float64 // asked, packets/s; 0: flat out
	Sent     Rate    // what the generator sent (bytes with FCS)
	Received uint64  // generated frames the sink counted
	Loss     float64 // 1 - Received/Sent
	// Latency of the frames received, when generator and sink share a clock (one host);
	// nil otherwise.
	Latency *Histogram
	Gen     PortInfo
	Sink    PortInfo
}

// Offered is the rate the generator achieved, packets/s.
func (t Trial) Offered() float64 { return t.Sent.PPS() }

// RunTrial sends c at rate (0: flat out) for d, waits settle for frames still in flight,
// and returns what the sink counted in between.
func RunTrial(ctx context.Context, c PortGenConfig, counts CountsFunc, rate float64, d, settle time.Duration) (Trial, error) {
	before, err := counts()
	if err != nil {
		return Trial{}, err
	}
	c.Rate = rate
	g, err := StartPortGen(c)
	if err != nil {
		return Trial{}, err
	}
	werr := sleep(ctx, d)
	res, gerr := g.Stop()
	if err := errors.Join(werr, gerr); err != nil {
		return Trial{}, err
	}
	if err := sleep(ctx, settle); err != nil {
		return Trial{}, err
	}
	after, err := counts()
	if err != nil {
		return Trial{}, err
	}
	t := Trial{Rate: rate, Sent: res.Sent, Received: after.Packets - min(before.Packets, after.Packets),
		Gen: g.Info(), Sink: after.Port}
	t.Loss = Loss(t.Sent.Packets, t.Received)
	t.Latency = LatencyBetween(before, after)
	return t, nil
}

// LatencyBetween returns the latency of the frames a sink received between two of its
// counts, or nil when the sink runs on another host than the caller (no shared clock).
func LatencyBetween(before, after SinkCounts) *Histogram {
	if after.BootID == "" || after.BootID != bootID() {
		return nil
	}
	h := after.Latency.Histogram()
	h.Sub(before.Latency.Histogram())
	return h
}

// SearchConfig configures an RFC 2544 throughput search.
type SearchConfig struct {
	Gen    PortGenConfig // the stream's sizes are set per search
	Counts CountsFunc
	Sizes  []int // frame sizes, one search each (default 64)
	// Loss is the highest loss a passing trial may have (default 0.00001: 0.001%).
	Loss float64
	// Trial is each trial's duration (default 2s; RFC 2544 asks for 60s), Settle the wait
	// for frames in flight before the sink is read (default 200ms).
	Trial, Settle time.Duration
	// Resolution ends the search when the passing and failing rates are closer than this
	// fraction of the flat-out rate (default 0.01).
	Resolution float64
	// MaxTrials bounds the trials of one size's search (default 20).
	MaxTrials int
	// Fractions of the throughput at which latency is measured (default 0.1, 0.5, 0.9).
	Fractions []float64
	// Progress, when set, hears about each trial.
	Progress func(string)
}

func (c *SearchConfig) defaults() {
	if len(c.Sizes) == 0 {
		c.Sizes = []int{64}
	}
	if c.Loss <= 0 {
		c.Loss = 0.00001
	}
	if c.Trial <= 0 {
		c.Trial = 2 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 200 * time.Millisecond
	}
	if c.Resolution <= 0 {
		c.Resolution = 0.01
	}
	if c.MaxTrials <= 0 {
		c.MaxTrials = 20
	}
	if c.Fractions == nil {
		c.Fractions = []float64{0.1, 0.5, 0.9}
	}
}

// SizeResult is the search of one frame size.
type SizeResult struct {
	Size int
	// Max is the first trial, flat out: what the generator offers.
	Max Trial
	// Best is the passing trial at the highest rate (zero when none passed); Throughput is
	// its offered rate, packets/s.
	Best       Trial
	Throughput float64
	// Converged: the search ended within Resolution (or the flat-out trial passed).
	Converged bool
	Trials    []Trial
	Latency   []LatencyAt
}

// LatencyAt is the latency trial at a fraction of the throughput.
type LatencyAt struct {
	Fraction float64
	Trial    Trial
}

// Search runs the RFC 2544 throughput search per frame size (a flat-out trial, then a
// binary search between the best passing and the lowest failing rate) and the latency
// trials at fractions of each size's throughput.
func Search(ctx context.Context, c SearchConfig) ([]SizeResult, error) {
	c.defaults()
	if c.Counts == nil {
		return nil, fmt.Errorf("%w: no sink to count with", ErrControl)
	}
	var out []SizeResult
	for _, size := range c.Sizes {
		g := c.Gen
		g.Stream.Sizes = []SizeShare{{size, 1}}
		r, err := c.searchSize(ctx, g, size)
		if err != nil {
			return out, fmt.Errorf("bench: rfc 2544 search at %d bytes: %w", size, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (c *SearchConfig) trial(ctx context.Context, g PortGenConfig, rate float64) (Trial, error) {
	t, err := RunTrial(ctx, g, c.Counts, rate, c.Trial, c.Settle)
	if err == nil && c.Progress != nil {
		c.Progress(fmt.Sprintf("%d B at %s: sent %d (%.3f Mpps), received %d, loss %.5f%%",
			g.Stream.Sizes[0].Size, rateName(rate), t.Sent.Packets, t.Offered()/1e6, t.Received, 100*t.Loss))
	}
	return t, err
}

func rateName(r float64) string {
	if r == 0 {
		return "flat out"
	}
	return fmt.Sprintf("%.3f Mpps", r/1e6)
}

func (c *SearchConfig) searchSize(ctx context.Context, g PortGenConfig, size int) (SizeResult, error) {
	r := SizeResult{Size: size}
	t, err := c.trial(ctx, g, 0)
	if err != nil {
		return r, err
	}
	r.Max, r.Trials = t, append(r.Trials, t)
	if t.Loss <= c.Loss {
		r.Best, r.Throughput, r.Converged = t, t.Offered(), true
	} else {
		lo, hi := 0.0, t.Offered()
		for len(r.Trials) < c.MaxTrials && hi-lo > c.Resolution*r.Max.Offered() {
			mid := (lo + hi) / 2
			t, err := c.trial(ctx, g, mid)
			if err != nil {
				return r, err
			}
			r.Trials = append(r.Trials, t)
			if t.Loss <= c.Loss {
				lo = mid
				if t.Offered() > r.Throughput {
					r.Best, r.Throughput = t, t.Offered()
				}
			} else {
				hi = mid
			}
		}
		r.Converged = hi-lo <= c.Resolution*r.Max.Offered()
	}
	if r.Throughput == 0 {
		return r, nil
	}
	for _, f := range c.Fractions {
		t, err := c.trial(ctx, g, f*r.Throughput)
		if err != nil {
			return r, err
		}
		r.Latency = append(r.Latency, LatencyAt{Fraction: f, Trial: t})
	}
	return r, nil
}
