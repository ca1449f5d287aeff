package flood

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// floodPool is where the flood's random sources come from: apart from every address the
// topology uses (its client is 198.18.0.1, its pool 198.18.64.0/18).
var floodPool = netip.MustParsePrefix("198.19.0.0/16")

// phase is one stretch of the test: the policy xlb runs and whether the flood runs.
type phase struct {
	name   string
	policy string // YAML lines under the service (acl:, limits:)
	flood  bool
}

// phaseResult is what the legitimate clients saw during a phase, and what it cost xlb.
type phaseResult struct {
	Name        string
	FloodPPS    float64 // SYNs sent per second
	LoopOK      int     // request loop (a new connection per request)
	LoopFailed  int
	P50, P99    time.Duration
	Max         time.Duration
	LongOK      int     // requests on the 24 long-lived connections answered by the connection's backend
	LongFailed  int     // requests that timed out or failed
	LongBroken  int     // connections that failed for good: reset or closed, or answered by another backend
	RSSMiB      float64 // xlb run's resident memory at the end of the phase
	Drops       dataplane.PolicyDrops
	ConnEntries uint64 // live connection-table entries at the end of the phase
	NewFlows    uint64 // connection-table misses during the phase (flows given a backend)
}

func phaseSeconds() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("XLB_FLOOD_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 2 * time.Second
}

// TestSYNFlood runs `xlb run` (DR, 2 backends) with 24 long-lived connections and a request
// loop from the client, and floods the VIP with SYNs from random sources: without a
// policy, with a service new-flow limit, with a per source /24 limit, and with an ACL that
// denies the flood's prefix. Every limited phase must count its drops; no long-lived
// connection may be broken in a limited phase (reset, closed, or answered by another
// backend), and each must answer again, from its own backend, once the flood is over; the
// process's memory must stay bounded. A request that only times out under the flood is
// counted as failed, not as broken: the backends answer the SYNs they are given (and
// retransmit those answers for a while after), on two CPUs shared with the generator and
// xlb their veths then drop some of their frames, legitimate answers among them (thousands
// per run, `ip -s link`), and TCP's backed-off retransmissions can outlast a request's 3 s.
// XLB_FLOOD_SECONDS sets the length of a phase (default 2s); docs/bench/flood.md has
// figures from longer runs.
func TestSYNFlood(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	dir := t.TempDir()
	bin := filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xlb-dev/xlb/cmd/xlb").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	x := startXLB(t, tn, bin, dir)
	d := phaseSeconds()
	phases := []phase{
		{name: "baseline"},
		{name: "flood, no policy", flood: true},
		{name: "flood, new_flows 2000/s", flood: true, policy: "    limits:\n      new_flows: {rate: 2000}\n"},
		{name: "flood, source_new_flows 50/s per /24", flood: true, policy: "    limits:\n      source_new_flows: {rate: 50}\n"},
		{name: "flood, acl deny " + floodPool.String(), flood: true, policy: "    acl:\n      deny: [" + floodPool.String() + "]\n"},
		{name: "after", policy: "    acl:\n      deny: [" + floodPool.String() + "]\n"},
	}
	long := openLongLived(t, tn, 24)
	var results []phaseResult
	for _, ph := range phases {
		x.reload(ph.policy)
		results = append(results, x.runPhase(t, tn, long, ph, d))
	}
	// Every connection answers again, from its own backend, once the flood is over; a
	// retransmission backed off during the flood may take several seconds to come round.
	settled := long.settle(30 * time.Second)
	long.close()
	report(t, results)
	for _, e := range long.errs {
		t.Log(e)
	}

	for _, r := range results[2:5] {
		if r.LongBroken != 0 || r.LongOK == 0 {
			t.Errorf("%s: long-lived connections: %d requests ok, %d failed; %d connections broken", r.Name, r.LongOK, r.LongFailed, r.LongBroken)
		}
	}
	for i, err := range settled {
		if err != nil {
			t.Errorf("long-lived connection %d (backend %s) after the flood: %v", i, long.backend[i], err)
		}
	}
	if results[2].Drops.Rate == 0 || results[3].Drops.SourceRate == 0 || results[4].Drops.ACL == 0 {
		t.Errorf("drops not counted by reason: %+v / %+v / %+v", results[2].Drops, results[3].Drops, results[4].Drops)
	}
	if results[4].NewFlows > uint64(results[4].LoopOK+results[4].LoopFailed)*4+100 {
		t.Errorf("acl phase: %d new flows reached the workers for %d requests", results[4].NewFlows, results[4].LoopOK)
	}
	if grow := results[len(results)-1].RSSMiB - results[0].RSSMiB; grow > 512 {
		t.Errorf("xlb run grew by %.0f MiB", grow)
	}
}

// xlbRun is the `xlb run` process under test.
type xlbRun struct {
	t    *testing.T
	cmd  *exec.Cmd
	conf string
	base string // the config without a policy
	api  *control.Client
	logs *testnet.Output
}

func startXLB(t *testing.T, tn *lab.Net, bin, dir string) *xlbRun {
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tn.VIP)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
	}
	b.WriteString("    health: {kind: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 3}\n")
	sock := filepath.Join(dir, "xlb.sock")
	x := &xlbRun{t: t, conf: filepath.Join(dir, "xlb.yaml"), api: &control.Client{Socket: sock}, logs: &testnet.Output{},
		base: b.String() + fmt.Sprintf("api: {socket: %s}\n", sock)}
	x.write("")
	x.cmd = exec.Command(bin, "run", "--config", x.conf)
	x.cmd.Stdout, x.cmd.Stderr = x.logs, x.logs
	if err := tn.LB.Start(x.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run log:\n%s", x.logs.String())
		}
	})
	x.waitFor("both backends up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		svcs, err := x.api.Services(ctx)
		return err == nil && len(svcs) == 1 && svcs[0].Up == len(tn.Backends)
	})
	return x
}

func (x *xlbRun) write(policy string) {
	// The policy lines belong to the service, before the api section.
	i := strings.Index(x.base, "api:")
	if err := os.WriteFile(x.conf, []byte(x.base[:i]+policy+x.base[i:]), 0o600); err != nil {
		x.t.Fatal(err)
	}
}

// reload writes the policy into the config and has xlb apply it (SIGHUP).
func (x *xlbRun) reload(policy string) {
	x.t.Helper()
	before := x.status().Reloads
	x.write(policy)
	if err := x.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		x.t.Fatal(err)
	}
	x.waitFor("reload", func() bool { return x.status().Reloads > before })
}

func (x *xlbRun) status() control.ControllerStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, _ := x.api.Status(ctx)
	return st
}

func (x *xlbRun) waitFor(what string, ok func() bool) {
	x.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			x.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counters reads the service's drops and the workers' table figures.
func (x *xlbRun) counters() (dataplane.PolicyDrops, uint64, uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := x.api.Drops(ctx)
	if err != nil {
		x.t.Fatalf("drops: %v", err)
	}
	raw, err := x.api.Raw(ctx, "/counters")
	if err != nil {
		x.t.Fatalf("counters: %v", err)
	}
	var ws []dataplane.WorkerStats
	if err := json.Unmarshal(raw, &ws); err != nil {
		x.t.Fatalf("counters: %v", err)
	}
	var entries, misses uint64
	for _, w := range ws {
		entries += w.ConnEntries
		misses += w.ConnMisses
	}
	return d.Services["web"], entries, misses
}

func (x *xlbRun) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", x.cmd.Process.Pid))
	if err != nil {
		x.t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// runPhase runs the clients (and the flood) for d and measures.
func (x *xlbRun) runPhase(t *testing.T, tn *lab.Net, long *longLived, ph phase, d time.Duration) phaseResult {
	t.Helper()
	r := phaseResult{Name: ph.name}
	drops0, _, misses0 := x.counters()
	var f *synFlood
	if ph.flood {
		lbIf := tn.LB.Ifaces[0]
		var err error
		f, err = newSYNFlood(tn.Client.NS, "eth0", tn.Client.Ifaces[0].MAC, lbIf.MAC, tn.VIP, 80, floodPool)
		if err != nil {
			t.Fatal(err)
		}
		f.start(uint64(time.Now().UnixNano()))
	}
	start := time.Now()
	var wg sync.WaitGroup
	var lat []time.Duration
	wg.Add(2)
	go func() { defer wg.Done(); lat, r.LoopFailed = requestLoop(tn, d) }()
	go func() { defer wg.Done(); r.LongOK, r.LongFailed, r.LongBroken = long.run(d) }()
	wg.Wait()
	if f != nil {
		sent, err := f.stopFlood()
		if err != nil {
			t.Errorf("flood: %v", err)
		}
		r.FloodPPS = float64(sent) / time.Since(start).Seconds()
	}
	r.LoopOK = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50, r.P99, r.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	r.RSSMiB = x.rssMiB()
	drops, entries, misses := x.counters()
	r.Drops = dataplane.PolicyDrops{ACL: drops.ACL - drops0.ACL, Rate: drops.Rate - drops0.Rate,
		SourceRate: drops.SourceRate - drops0.SourceRate}
	r.ConnEntries, r.NewFlows = entries, misses-misses0
	return r
}

// requestLoop makes one request after another, each on a new connection (1s timeout),
// for d, and returns the answered requests' latencies and the failures.
func requestLoop(tn *lab.Net, d time.Duration) ([]time.Duration, int) {
	c := tn.Client.HTTPClient(lab.ClientOptions{Timeout: time.Second})
	url := fmt.Sprintf("http://%s:80/", tn.VIP)
	var lat []time.Duration
	failed := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := lab.Get(ctx, c, url)
		cancel()
		if err != nil {
			failed++
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, failed
}

// longLived is n keep-alive connections to the VIP, and the backend that answered each
// one's first request.
type longLived struct {
	conns   []*testnet.HTTPConn
	backend []string
	broken  []bool   // failed for good (see get)
	errs    []string // what each failure was, for the log
}

func openLongLived(t *testing.T, tn *lab.Net, n int) *longLived {
	t.Helper()
	l := &longLived{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := tn.Client.Dial(ctx, "tcp", netip.AddrPortFrom(tn.VIP, 80).String())
		cancel()
		if err != nil {
			t.Fatalf("long-lived connection: %v", err)
		}
		h := testnet.NewHTTPConn(c)
		be, err := h.Get(2 * time.Second)
		if err != nil {
			t.Fatalf("long-lived connection: first request: %v", err)
		}
		l.conns, l.backend, l.broken = append(l.conns, h), append(l.backend, be), append(l.broken, false)
	}
	return l
}

// get sends one request on connection i. A timeout leaves the answer to the next request
// on that connection (HTTP/1.1 answers in order), so it is only a failure; any other error
// (a reset, a close) or an answer from another backend breaks the connection for good.
func (l *longLived) get(i int, timeout time.Duration) error {
	be, err := l.conns[i].Get(timeout)
	var ne net.Error
	switch {
	case err != nil && errors.As(err, &ne) && ne.Timeout():
	case err != nil:
		l.broken[i] = true
	case be != l.backend[i]:
		l.broken[i] = true
		err = fmt.Errorf("answered by %s, not %s", be, l.backend[i])
	}
	if err != nil {
		l.errs = append(l.errs, fmt.Sprintf("long-lived connection %d: %v", i, err))
	}
	return err
}

// run sends a request on every connection in turn, one every 20ms, for d, and counts the
// answered requests, the failed ones, and the connections broken during the run.
func (l *longLived) run(d time.Duration) (ok, failed, broken int) {
	was := slices.Clone(l.broken)
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range l.conns {
			if l.get(i, 3*time.Second) != nil {
				failed++
			} else {
				ok++
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i, b := range l.broken {
		if b && !was[i] {
			broken++
		}
	}
	return ok, failed, broken
}

// settle asks every connection until it answers, for at most d in all, and returns per
// connection nil, or why it is broken (at any time since it was opened) or did not answer.
func (l *longLived) settle(d time.Duration) []error {
	errs := make([]error, len(l.conns))
	end := time.Now().Add(d)
	for i := range l.conns {
		for !l.broken[i] {
			err := l.get(i, 3*time.Second)
			if err == nil {
				break
			}
			if time.Now().After(end) {
				errs[i] = fmt.Errorf("no answer within %v: %w", d, err)
				break
			}
		}
		if l.broken[i] {
			errs[i] = errors.New("broken (see the log)")
		}
	}
	return errs
}

func (l *longLived) close() {
	for _, c := range l.conns {
		c.Close()
	}
}

func report(t *testing.T, rs []phaseResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "| phase | flood SYN/s | loop ok | loop failed | p50 | p99 | max | long-lived ok/failed/broken | drops acl/rate/source | new flows | table entries | RSS MiB |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %.0f | %d | %d | %s | %s | %s | %d/%d/%d | %d/%d/%d | %d | %d | %.0f |\n",
			r.Name, r.FloodPPS, r.LoopOK, r.LoopFailed, ms(r.P50), ms(r.P99), ms(r.Max), r.LongOK, r.LongFailed, r.LongBroken,
			r.Drops.ACL, r.Drops.Rate, r.Drops.SourceRate, r.NewFlows, r.ConnEntries, r.RSSMiB)
	}
	t.Logf("SYN flood, %v per phase:\n%s", phaseSeconds(), b.String())
}
