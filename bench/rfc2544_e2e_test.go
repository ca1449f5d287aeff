package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// newHosts builds the lab for a test (root only) and removes it afterwards.
func newHosts(t *testing.T) *ThreeHosts {
	t.Helper()
	testnet.Skip(t)
	h, err := NewThreeHosts()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// buildXLB builds the xlb binary once per test binary.
func buildXLB(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xlb-dev/xlb/cmd/xlb").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startXLBRun builds xlb and runs it on the LB host; its log is shown when the test fails.
func startXLBRun(t *testing.T, h *ThreeHosts) (bin string) {
	t.Helper()
	bin = buildXLB(t)
	logs := &testnet.Output{}
	if err := h.StartXLB(bin, logs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run:\n%s", logs.String())
		}
	})
	return bin
}

// xlbPackets asks the daemon (xlb ctl) how many packets its data path counted for the
// service.
func xlbPackets(t *testing.T, h *ThreeHosts, bin string) uint64 {
	t.Helper()
	out, err := h.LB.Run(bin, "ctl", "--socket", h.APISocket(), "--json", "services")
	var svcs []control.ServiceStatus
	if err == nil {
		err = json.Unmarshal(out, &svcs)
	}
	if err != nil || len(svcs) != 1 || svcs[0].Traffic == nil {
		t.Fatalf("xlb ctl services: %v\n%s", err, out)
	}
	return svcs[0].Traffic.Packets
}

// A real `xlb run` daemon on the LB host forwards (dr, maglev) from the generator host to
// the backend host, where the sink counts; the generator asks the sink over a TCP control
// connection. The RFC 2544 search converges, and the two sides' counts agree.
func TestE2ERFC2544ThreeHosts(t *testing.T) {
	h := newHosts(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gen := h.GenConfig(0)
	// The generator's own rate against the in-kernel XDP limit on g0 -> l0, before xlb.
	veth, err := h.VethLimits(ctx, gen, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(veth) != 2 || veth[0].Forwarded.Median <= 0 || veth[1].Forwarded.Median <= 0 || veth[0].VsXDP.N != 1 {
		t.Errorf("veth limits: %+v", veth)
	}
	t.Logf("on g0 -> l0: generator %.3f Mpps, XDP_TX %.3f Mpps (%.2fx)", veth[0].Forwarded.Median,
		veth[1].Forwarded.Median, veth[0].VsXDP.Median)
	bin := startXLBRun(t, h)
	sink, err := StartSink(Port{Iface: "s0", NS: h.Sink.NsHandle(), CPUs: []int{1 % runtime.NumCPU()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if sink.Info().ZeroCopy {
		t.Errorf("sink on veth reports zero copy: %s", sink.Info())
	}
	sc, err := ServeSink(ctx, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	low, err := WaitForwarding(ctx, gen, sc.Counts, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if low.Latency == nil || low.Latency.Count() != low.Received {
		t.Errorf("latency of %v frames timed, %d received (generator and sink share this host)", low.Latency, low.Received)
	}

	var trials []string
	cfg := SearchConfig{Gen: gen, Counts: sc.Counts, Sizes: []int{64}, Trial: 250 * time.Millisecond,
		Settle: 100 * time.Millisecond, Resolution: 0.05, MaxTrials: 10, Fractions: []float64{0.5},
		Progress: func(s string) { trials = append(trials, s) }}
	start := time.Now()
	p0 := xlbPackets(t, h, bin)
	res, err := Search(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	threeCounts(t, r, xlbPackets(t, h, bin)-p0)
	t.Logf("trials:\n%s", strings.Join(trials, "\n"))
	if !r.Converged || r.Throughput <= 0 {
		t.Fatalf("search did not converge: throughput %.0f pps after %d trials", r.Throughput, len(r.Trials))
	}
	for _, tr := range r.Trials {
		// Both sides count the same frames: the sink never counts more than was sent.
		if tr.Received > tr.Sent.Packets {
			t.Errorf("trial at %.0f pps: sink received %d, generator sent %d", tr.Rate, tr.Received, tr.Sent.Packets)
		}
	}
	b := r.Best
	if lost := b.Sent.Packets - b.Received; float64(lost) > cfg.Loss*float64(b.Sent.Packets) {
		t.Errorf("best trial lost %d of %d", lost, b.Sent.Packets)
	}
	if len(r.Latency) != 1 || r.Latency[0].Trial.Latency == nil || r.Latency[0].Trial.Latency.Count() == 0 {
		t.Errorf("no latency at half the throughput: %+v", r.Latency)
	}
	rep := SearchReport(cfg, "xlb run (dr)", res, start)
	var out strings.Builder
	if err := rep.WriteMarkdown(&out, "test"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| rfc2544 | xlb run (dr) | 64 udp |", "rfc2544-latency", "g0 (driver veth", "s0 (driver veth", "copy mode"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
	if err := sink.Close(); err != nil {
		t.Errorf("sink: %v", err)
	}
}

// A sink on a device without native XDP (a macvlan) falls back to generic XDP, copy mode,
// and says so.
func TestSinkGenericXDP(t *testing.T) {
	testnet.Skip(t)
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	ns, err := lab.NewNS(hex.EncodeToString(idb[:]), "generic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	va, _, err := ns.AddVeth("va", "vb", 1500, 1)
	if err != nil {
		t.Fatal(err)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "mv0", ParentIndex: va.Attrs().Index},
		Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := ns.Handle().LinkAdd(mv); err != nil {
		t.Skipf("no macvlan here: %v", err)
	}
	if err := ns.Handle().LinkSetUp(mv); err != nil {
		t.Fatal(err)
	}
	s, err := StartSink(Port{Iface: "mv0", NS: ns.NsHandle(), Queues: 1, CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if info := s.Info(); !info.GenericXDP || info.ZeroCopy || !strings.Contains(info.String(), "copy mode, generic XDP") {
		t.Errorf("sink on a macvlan: %s", info)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// threeCounts checks the three counts of a search's frames: the sink's, xlb's own (p), the
// generator's.
func threeCounts(t *testing.T, r SizeResult, p uint64) {
	t.Helper()
	var sent, received uint64
	all := r.Trials
	for _, l := range r.Latency {
		all = append(all, l.Trial)
	}
	for _, tr := range all {
		sent, received = sent+tr.Sent.Packets, received+tr.Received
	}
	if received > p || p > sent {
		t.Errorf("sink received %d, xlb counted %d, generator sent %d: want sink <= xlb <= generator", received, p, sent)
	} else {
		t.Logf("sink received %d, xlb counted %d, generator sent %d", received, p, sent)
	}
}
