package bench

import (
	"fmt"
	"strings"
	"time"
)

// Report groups of an RFC 2544 search.
const (
	GroupRFC2544 = "rfc2544"         // throughput: the highest rate with loss under the bound
	GroupLatAt   = "rfc2544-latency" // latency at a fraction of that rate
)

// SearchReport turns search results into a report (the same table, text and Markdown as
// Run's): one throughput row per size and one row per latency fraction. dut names what
// forwarded between the ports (the rows' variant).
func SearchReport(c SearchConfig, dut string, res []SizeResult, started time.Time) *Report {
	c.defaults()
	r := &Report{Machine: machine(), Started: started, Elapsed: time.Since(started)}
	var gen, sink PortInfo
	base := c.Gen.Stream
	flows := base.Base.Flows
	for _, s := range res {
		gen, sink = s.Max.Gen, s.Max.Sink
		proto := base.Base.Proto
		if len(base.Protos) > 0 {
			proto = base.Protos[0].Proto
		}
		row := Row{Group: GroupRFC2544, Variant: dut, Proto: proto, Size: s.Size, Flows: flows,
			Offered: one(s.Max.Offered() / 1e6)}
		b := s.Best
		if s.Throughput > 0 {
			row.Forwarded = one(s.Throughput / 1e6)
			row.Gbps = one(b.Sent.BPS() / 1e9)
			row.Loss = one(b.Loss)
			row.Notes = append(row.Notes, fmt.Sprintf("at throughput: sent %d, sink received %d", b.Sent.Packets, b.Received))
		} else {
			row.Err = fmt.Sprintf("no rate passed (loss above %g%% even at the lowest rate tried)", 100*c.Loss)
		}
		conv := "converged"
		if !s.Converged {
			conv = "NOT converged"
		}
		row.Notes = append(row.Notes, fmt.Sprintf("%s in %d trials of %v (resolution %g%% of flat out)", conv,
			len(s.Trials), c.Trial, 100*c.Resolution))
		if s.Max.Loss <= c.Loss {
			row.Notes = append(row.Notes, "flat out passed: the generator, not the device under test, was the limit")
		}
		r.Rows = append(r.Rows, row)
		for _, l := range s.Latency {
			t := l.Trial
			lr := Row{Group: GroupLatAt, Variant: dut, Proto: proto, Size: s.Size, Flows: flows, Rate: t.Rate,
				Forwarded: one(float64(t.Received) / t.Sent.Elapsed.Seconds() / 1e6), Gbps: one(t.Sent.BPS() / 1e9),
				Offered: one(t.Offered() / 1e6), Loss: one(t.Loss)}
			lr.Notes = append(lr.Notes, fmt.Sprintf("%.0f%% of throughput", 100*l.Fraction))
			if t.Offered() < 0.98*t.Rate {
				lr.Notes = append(lr.Notes, fmt.Sprintf("the generator offered only %.3f of the %.3f Mpps asked",
					t.Offered()/1e6, t.Rate/1e6))
			}
			if t.Latency != nil && t.Latency.Count() > 0 {
				lr.P50, lr.P99, lr.P999 = t.Latency.Percentile(0.5), t.Latency.Percentile(0.99), t.Latency.Percentile(0.999)
				lr.Notes = append(lr.Notes, fmt.Sprintf("%d frames timed", t.Latency.Count()))
			} else if t.Latency == nil {
				lr.Notes = append(lr.Notes, "no latency: the sink runs on another host (no shared clock)")
			}
			r.Rows = append(r.Rows, lr)
		}
	}
	sizes := make([]string, len(c.Sizes))
	for i, s := range c.Sizes {
		sizes[i] = fmt.Sprint(s)
	}
	r.Placement = fmt.Sprintf("generator: %s; sink: %s", gen, sink)
	r.Method = fmt.Sprintf("RFC 2544 throughput: per frame size (%s bytes, FCS included) a flat-out trial, then a "+
		"binary search for the highest offered rate whose loss stays at or below %g%% (sink count against "+
		"generator count over each %v trial, read %v after the generator stopped), until the passing and failing "+
		"rates are within %g%% of the flat-out rate; then latency trials at %v of that rate (send time in the "+
		"payload, CLOCK_MONOTONIC, so only when generator and sink share a host). Device under test: %s. "+
		"%d flows from %v to %v:%d.", strings.Join(sizes, ", "), 100*c.Loss, c.Trial, c.Settle,
		100*c.Resolution, c.Fractions, dut, flows, base.Base.SrcPool, base.Base.Dst, base.Base.DstPort)
	r.Scenarios = "Rows: `" + GroupRFC2544 + "` is the throughput (Mpps forwarded: the passing trial's offered " +
		"rate; Mpps offered: the flat-out trial's); `" + GroupLatAt + "` are the latency trials, each at a fixed rate."
	return r
}

func one(v float64) Summary { return Summary{Median: v, Min: v, Max: v, N: 1} }
