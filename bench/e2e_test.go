package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestRunE2E runs a tiny bench end to end (root, namespaces, XDP): every row is there, xlb
// forwarded what the sink counted, the checking sink saw only correct frames spread over the
// backends, and the baselines that cannot run say why.
func TestRunE2E(t *testing.T) {
	testnet.Skip(t)
	_ = Prioritize() // the generator and the worker are busy threads: on a loaded host, not starved
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var progress int
	o := Options{Groups: []string{GroupForward, GroupNewFlows, GroupOverload, GroupLatency}, Sizes: []int{64},
		Duration: 200 * time.Millisecond, Warmup: 80 * time.Millisecond, Rounds: 1, LatencyRate: 20000,
		Progress: func(done, total int, what string) { progress++ }}
	rep, err := Run(ctx, o)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if progress < 10 {
		t.Errorf("progress called %d times", progress)
	}
	rows := map[string]Row{}
	for _, r := range rep.Rows {
		rows[r.Group+"/"+r.Variant] = r
		if r.Err != "" {
			t.Errorf("%s/%s: %s", r.Group, r.Variant, r.Err)
		}
	}
	want := []string{"forward/xdp-tx", "forward/xlb-dr", "forward/nft-dnat", "forward/xlb-tunnel",
		"newflows/xlb-dr", "overload/xlb-dr-1cpu", "latency/xdp-tx", "latency/xlb-dr", "latency/nft-dnat",
		"latency/xlb-tunnel", "forward/asavie-l2fwd", "forward/xdp-drop"}
	if IPVS() == nil {
		want = append(want, "forward/ipvs-dr", "forward/ipvs-tunnel")
	} else if _, ok := rows["forward/ipvs-dr"]; ok {
		t.Errorf("an IPVS row although this kernel has no IPVS: %+v", rows["forward/ipvs-dr"])
	}
	if runtime.NumCPU() > 1 {
		want = append(want, "forward/xlb-dr-1cpu")
	}
	for _, k := range want {
		r, ok := rows[k]
		if !ok {
			t.Errorf("no row %s", k)
			continue
		}
		if r.Forwarded.N != 1 {
			t.Errorf("%s: %d samples", k, r.Forwarded.N)
		}
	}
	for k, ss := range rep.samples { // every case forwarded something
		if s := ss[0]; s.SinkTotal == 0 && s.Forwarded.Packets == 0 && (s.Sink == nil || s.Sink.Good == 0) {
			t.Errorf("%s: nothing forwarded", k)
		}
	}
	for _, k := range []string{"forward/xlb-dr", "forward/xlb-tunnel"} {
		c := Case{Group: GroupForward, Variant: rows[k].Variant, Proto: UDP, Size: 64, Flows: 1024}
		s := rep.samples[c.Key()][0]
		// The sink counted what xlb transmitted (both read after the generator drained).
		if d := math.Abs(float64(s.SinkTotal) - float64(s.DUTTotal)); s.DUTTotal == 0 || d > 0.01*float64(s.DUTTotal)+64 {
			t.Errorf("%s: sink counted %d, xlb transmitted %d", k, s.SinkTotal, s.DUTTotal)
		}
		if math.IsNaN(rows[k].VsXDP.Median) || math.IsNaN(rows[k].VsNFT.Median) {
			t.Errorf("%s: no ratios %+v %+v", k, rows[k].VsXDP, rows[k].VsNFT)
		}
	}
	for _, v := range []string{XDPTX, XLBDR, NFTDNAT, XLBTunnel} {
		c := Case{Group: GroupLatency, Variant: v, Proto: UDP, Size: 64, Flows: 1024, Rate: 20000, Check: true}
		s := rep.samples[c.Key()][0]
		if s.Sink == nil || s.Sink.Good == 0 || s.Sink.BadTotal() != 0 {
			t.Errorf("%s: checking sink: good %d bad %v", v, s.Sink.Good, s.Sink.Bad)
			continue
		}
		if v == XLBDR || v == XLBTunnel || v == NFTDNAT {
			for i := range numBackends {
				if s.Sink.Spread[i] == 0 {
					t.Errorf("%s: backend %d got nothing (%v)", v, i, s.Sink.Spread[:numBackends])
				}
			}
		}
		if r := rows["latency/"+v]; r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("%s: latency p50 %v p99 %v", v, r.P50, r.P99)
		}
	}
	over := Case{Group: GroupOverload, Variant: XLBDR1CPU, Proto: UDP, Size: 64, Flows: 1024}
	if s := rep.samples[over.Key()][0]; s.After == nil || s.After.Good == 0 || s.After.BadTotal() != 0 || len(s.WorkerErr) > 0 {
		t.Errorf("overload: after: good %d bad %v, worker errors %v", s.After.Good, s.After.Bad, s.WorkerErr)
	}
	nf := Case{Group: GroupNewFlows, Variant: XLBDR, Proto: TCPSYN, Size: 64, NewFlows: true}
	if s := rep.samples[nf.Key()][0]; s.NewFlows < s.DUTSent*9/10 {
		t.Errorf("new flows: %d scheduled for %d forwarded", s.NewFlows, s.DUTSent)
	}
	var txt, md bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md, "xlb bench"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"xlb-dr", "nft-dnat", "xdp-tx", "asavie-l2fwd", "placement"} {
		if !strings.Contains(txt.String(), want) || !strings.Contains(strings.ToLower(md.String()), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(txt.String(), "not available") {
		t.Error("the report lists a baseline it did not measure")
	}
	for k, ss := range rep.samples {
		if s := ss[0]; s.DUTTotal > 0 {
			t.Logf("%s: sink %d, xlb %d", k, s.SinkTotal, s.DUTTotal)
		}
	}
	t.Logf("\n%s", txt.String())
}

// TestRunTwoGenerators runs the checking sink with two generator threads on two veth queues
// (xlb then runs two workers): every frame arrives checked and correct.
func TestRunTwoGenerators(t *testing.T) {
	testnet.Skip(t)
	_ = Prioritize()
	cpus := []int{0, 0}
	if runtime.NumCPU() > 1 {
		cpus = []int{0, 1}
	}
	rep, err := Run(t.Context(), Options{Groups: []string{GroupLatency}, GenCPUs: cpus, Duration: 150 * time.Millisecond,
		Warmup: 50 * time.Millisecond, Rounds: 1, LatencyRate: 20000})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{XDPTX, XLBDR, NFTDNAT, XLBTunnel} {
		c := Case{Group: GroupLatency, Variant: v, Proto: UDP, Size: 64, Flows: 1024, Rate: 20000, Check: true}
		s, ok := rep.samples[c.Key()][0]
		if !ok || s.Sink == nil {
			t.Errorf("%s: no sample (%v)", v, rep.errs[c.Key()])
			continue
		}
		if s.Sink.Good == 0 || s.Sink.BadTotal() != 0 {
			t.Errorf("%s: good %d, bad %v", v, s.Sink.Good, s.Sink.Bad)
		}
		if s.Offered.Packets < s.Sink.Good {
			t.Errorf("%s: %d good of %d sent", v, s.Sink.Good, s.Offered.Packets)
		}
	}
}
