package ha

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testVIP = netip.MustParseAddr("198.19.0.10")

func testConfig(prio uint8, preempt bool) Config {
	return Config{Interface: "fake0", VirtualRouterID: 9, Priority: prio,
		AdvertInterval: 40 * time.Millisecond, Preempt: &preempt, VIPs: []netip.Addr{testVIP},
		GARPRepeat: 2, GARPInterval: 10 * time.Millisecond}
}

// node is a Router on a hub with hooks that record whether it forwards.
type node struct {
	r          *Router
	t          *fakeTransport
	forwarding atomic.Bool
	cancel     context.CancelFunc
	done       chan error
	once       sync.Once
	err        error
}

func startNode(t *testing.T, h *hub, addr netip.Addr, cfg Config) *node {
	t.Helper()
	n := &node{t: h.join(netip.MustParseAddr(addr.String())), done: make(chan error, 1)}
	r, err := New(cfg, Hooks{
		OnMaster: func() error { n.forwarding.Store(true); return nil },
		OnBackup: func() error { n.forwarding.Store(false); return nil },
	}, WithTransport(n.t), WithLogger(testLogger(t).With("node", addr)))
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- r.Run(ctx) }()
	t.Cleanup(func() { n.stop() })
	return n
}

// testLogger sends the router's log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// waitFor polls cond until it holds (a functional wait, not a timing assertion).
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stop shuts the router down cleanly and waits for Run to return.
func (n *node) stop() error {
	n.cancel()
	return n.wait()
}

// wait waits for Run to return.
func (n *node) wait() error {
	n.once.Do(func() { n.err = <-n.done })
	return n.err
}

// startPair starts a (priority pa) and, once it is master, b (priority pb).
func startPair(t *testing.T, h *hub, pa, pb uint8, preempt bool) (*node, *node) {
	t.Helper()
	a := startNode(t, h, peerA, testConfig(pa, preempt))
	waitState(t, a, Master, time.Second)
	b := startNode(t, h, peerB, testConfig(pb, preempt))
	waitState(t, b, Backup, time.Second)
	return a, b
}

// waitState polls until the router reaches s (a functional wait, not a timing assertion).
func waitState(t *testing.T, n *node, s State, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if n.r.State() == s {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("router %v: state %v, want %v after %v", n.t.src, n.r.State(), s, within)
	return 0
}

func TestRouterFailoverOnHub(t *testing.T) {
	h := newHub()
	a, b := startPair(t, h, 200, 100, true)
	time.Sleep(300 * time.Millisecond) // several Master_Down_Intervals of b
	if b.r.State() != Backup || b.forwarding.Load() {
		t.Fatal("backup took over while the master advertised")
	}
	if !a.forwarding.Load() || a.t.announcedCount() < 2 {
		t.Fatalf("master: forwarding %v, announcements %d (want >= 2)", a.forwarding.Load(), a.t.announcedCount())
	}
	if st := b.r.Status(); st.Master != peerA || st.MasterPriority != 200 || st.AdvertsReceived == 0 {
		t.Fatalf("backup status %+v", st)
	}
	st := a.r.Status()
	js, err := json.Marshal(&st)
	if err != nil || !strings.Contains(string(js), `"state":"master"`) || !strings.Contains(string(js), `"source":"198.18.0.1"`) {
		t.Fatalf("status JSON %s, %v", js, err)
	}

	// Clean stop: a sends priority 0 and stops forwarding; b takes over.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if p := a.t.sentPriorities(); p[len(p)-1] != 0 {
		t.Fatalf("last advert of a clean stop has priority %d, want 0", p[len(p)-1])
	}
	if a.forwarding.Load() {
		t.Fatal("stopped master still forwards")
	}
	waitState(t, b, Master, time.Second)
	waitFor(t, "new master forwards", time.Second, b.forwarding.Load)
}

func TestRouterCrashAndPreemption(t *testing.T) {
	for _, preempt := range []bool{true, false} {
		h := newHub()
		a, b := startPair(t, h, 200, 100, preempt)
		// Crash: a's transport dies without a priority-0 advertisement.
		a.t.Close()
		if err := a.wait(); err == nil {
			t.Fatal("Run returned nil after its transport failed")
		}
		if p := a.t.sentPriorities(); p[len(p)-1] == 0 {
			t.Fatal("a crashed master managed to send priority 0")
		}
		waitState(t, b, Master, time.Second)
		// a comes back: with preemption it takes over again, without it b stays master.
		h2 := startNode(t, h, peerA, testConfig(200, preempt))
		if preempt {
			waitState(t, h2, Master, time.Second)
			waitState(t, b, Backup, time.Second)
			continue
		}
		waitState(t, h2, Backup, time.Second)
		time.Sleep(300 * time.Millisecond)
		if h2.r.State() != Backup || b.r.State() != Master {
			t.Fatalf("preempt off: returning router %v, master %v", h2.r.State(), b.r.State())
		}
	}
}

func TestRouterSplitBrain(t *testing.T) {
	h := newHub()
	// b cannot hear a: both become master; a (higher priority) sees b's adverts.
	h.setCut(peerA, peerB, true)
	a := startNode(t, h, peerA, testConfig(200, true))
	b := startNode(t, h, peerB, testConfig(100, true))
	waitState(t, a, Master, time.Second)
	waitState(t, b, Master, time.Second)
	deadline := time.Now().Add(time.Second)
	for !a.r.Status().SplitBrain && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := a.r.Status()
	if !st.SplitBrain || st.SplitBrainEvents == 0 || st.SplitBrainPeer != peerB {
		t.Fatalf("split brain not reported: %+v", st)
	}
	// Heal the link: b hears a and yields; the report clears.
	h.setCut(peerA, peerB, false)
	waitState(t, b, Backup, time.Second)
	waitFor(t, "split brain report clears after b yielded", time.Second,
		func() bool { return !a.r.Status().SplitBrain })
}

func TestRouterTieBreak(t *testing.T) {
	h := newHub()
	// A partitioned link makes both master; when it heals, equal priorities are broken by
	// the higher primary address (RFC 5798 6.4.3): b stays master. (A backup never
	// preempts an equal-priority master, so this is how two masters meet.)
	h.setCut(peerA, peerB, true)
	h.setCut(peerB, peerA, true)
	a := startNode(t, h, peerA, testConfig(100, true))
	b := startNode(t, h, peerB, testConfig(100, true))
	waitState(t, a, Master, time.Second)
	waitState(t, b, Master, time.Second)
	h.setCut(peerA, peerB, false)
	h.setCut(peerB, peerA, false)
	waitState(t, a, Backup, time.Second)
	time.Sleep(200 * time.Millisecond)
	if b.r.State() != Master || a.r.State() != Backup {
		t.Fatalf("after the tie: a %v, b %v", a.r.State(), b.r.State())
	}
}

func TestRouterDemote(t *testing.T) {
	h := newHub()
	a, b := startPair(t, h, 200, 100, true)
	if err := a.r.Demote(); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, Master, time.Second)
	time.Sleep(300 * time.Millisecond)
	if a.r.State() != Backup || !a.r.Status().Demoted {
		t.Fatalf("demoted router preempted: %v", a.r.State())
	}
	if a.forwarding.Load() {
		t.Fatal("demoted router still forwards")
	}
}

func TestRouterDropsBadTTL(t *testing.T) {
	h := newHub()
	h.ttl = 64 // a routed (off-link) sender
	a := startNode(t, h, peerA, testConfig(200, true))
	waitState(t, a, Master, time.Second)
	b := startNode(t, h, peerB, testConfig(100, true))
	waitState(t, b, Master, time.Second) // b ignored every advert
	waitFor(t, "ttl drops counted", time.Second, func() bool { return b.r.Status().Drops[DropTTL] > 0 })
	if st := b.r.Status(); st.AdvertsReceived != 0 {
		t.Fatalf("accepted %d adverts with TTL 64", st.AdvertsReceived)
	}
}

func TestRouterUnicastPeersAndHookErrors(t *testing.T) {
	h := newHub()
	stranger := h.join(netip.MustParseAddr("198.18.0.9"))
	cfg := testConfig(100, true)
	cfg.UnicastPeers = []netip.Addr{peerB}
	var mu sync.Mutex
	var calls []string
	tr := h.join(peerA)
	r, err := New(cfg, Hooks{
		OnMaster: func() error { mu.Lock(); calls = append(calls, "master"); mu.Unlock(); return errHook },
		OnBackup: func() error { mu.Lock(); calls = append(calls, "backup"); mu.Unlock(); return nil },
	}, WithTransport(tr), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	// The stranger's higher-priority adverts are dropped: r becomes master anyway.
	msg := AppendAdvert(nil, &Advert{VRID: 9, Priority: 250, Interval: 2, Addrs: []netip.Addr{testVIP}},
		stranger.src, peerA)
	for r.State() != Master {
		stranger.Send(msg, peerA)
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := r.Status()
	if st.Drops[DropPeer] == 0 || st.HookErrors != 1 || st.State != Initialize {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, []string{"backup", "master", "backup"}) {
		t.Fatalf("hook calls %v", calls)
	}
	// Adverts went to the unicast peer only.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.sent) == 0 {
		t.Fatal("nothing sent")
	}
	if err := r.Demote(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Demote after Run: %v", err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

// TestSetPriorityAdvertised: a master whose priority drops below a preempting backup's (a
// tracked script or interface) advertises the new priority, and the backup takes over; a
// master in fault resigns at once.
func TestSetPriorityAdvertised(t *testing.T) {
	h := newHub()
	a, b := startPair(t, h, 200, 100, true)
	a.r.SetPriority(50)
	waitState(t, b, Master, 2*time.Second)
	waitState(t, a, Backup, time.Second)
	if st := b.r.Status(); st.Master != peerB {
		t.Fatalf("b status %+v", st)
	}
	a.r.SetPriority(200) // a preempts again
	waitState(t, a, Master, 2*time.Second)
	a.r.SetFault(true)
	waitState(t, a, Fault, time.Second)
	waitState(t, b, Master, time.Second)
	// The state is published before the hook runs (perform, outside the lock), and a
	// resigning master sends its priority 0 before it calls OnBackup: under load the backup
	// can take over in between. So the hook gets a moment, not an instant.
	for deadline := time.Now().Add(time.Second); a.forwarding.Load() && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	if a.forwarding.Load() {
		t.Error("a forwards in fault")
	}
}
