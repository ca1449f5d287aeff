package health

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// script is a fake Checker that replays outcomes (repeating the last one) and counts calls.
type script struct {
	mu       sync.Mutex
	outcomes []bool
	calls    int
	firsts   []time.Time // start time of every call
	done     chan struct{}
	once     sync.Once
}

func newScript(outcomes ...bool) *script {
	return &script{outcomes: outcomes, done: make(chan struct{})}
}

func (s *script) Check(ctx context.Context) (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firsts = append(s.firsts, time.Now())
	i := min(s.calls, len(s.outcomes)-1)
	s.calls++
	if s.calls >= len(s.outcomes) {
		s.once.Do(func() { close(s.done) })
	}
	if s.outcomes[i] {
		return Report{Load: float64(s.calls), HasLoad: true}, nil
	}
	return Report{}, errors.New("scripted failure")
}

func (s *script) String() string { return "script" }

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// recorder collects transitions and results.
type recorder struct {
	mu      sync.Mutex
	trans   []Transition
	results map[string][]Result
}

func (r *recorder) options() Options {
	r.results = make(map[string][]Result)
	return Options{
		OnTransition: func(t Transition) { r.mu.Lock(); r.trans = append(r.trans, t); r.mu.Unlock() },
		OnResult: func(id string, res Result) {
			r.mu.Lock()
			r.results[id] = append(r.results[id], res)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) transitions() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.trans...)
}

func (r *recorder) probeIndex(t Transition) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, res := range r.results[t.ID] {
		if res.Time.Equal(t.Result.Time) {
			return i
		}
	}
	return -1
}

// noChecksLeft waits (briefly: a goroutine that has run its last deferred call is still listed
// until it exits) until no more than want check goroutines exist.
func noChecksLeft(t *testing.T, base, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for runChecks()-base > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d check goroutines, want %d", runChecks()-base, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// resultsAtLeast waits until n results of id were reported.
func (r *recorder) resultsAtLeast(t *testing.T, id string, n int) {
	t.Helper()
	waitFor(t, "results", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.results[id]) >= n })
}

// runChecks counts goroutines running a check loop: none may outlive Close or Remove.
func runChecks() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Count(buf[:n], []byte("created by github.com/xlb-dev/xlb/health.(*Monitor).start"))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMonitorRiseFall(t *testing.T) {
	var rec recorder
	opts := rec.options()
	opts.NoStagger = true
	m := NewMonitor(context.Background(), opts)
	defer m.Close()
	// Up initially; fall 3, rise 2. Probe indices:
	// 0 T, 1 F, 2 F, 3 T, 4 F, 5 F, 6 F (down), 7 T, 8 F, 9 T, 10 T (up), 11 T
	s := newScript(true, false, false, true, false, false, false, true, false, true, true, true)
	err := m.Add(Check{ID: "b1", Checker: s, Interval: time.Millisecond, Timeout: time.Millisecond,
		Rise: 2, Fall: 3, Initial: StateUp})
	if err != nil {
		t.Fatal(err)
	}
	rec.resultsAtLeast(t, "b1", len(s.outcomes))
	m.Close()
	tr := rec.transitions()
	if len(tr) != 2 {
		t.Fatalf("transitions %+v, want 2", tr)
	}
	if tr[0].From != StateUp || tr[0].To != StateDown || rec.probeIndex(tr[0]) != 6 {
		t.Errorf("first transition %+v at probe %d, want up->down at 6", tr[0], rec.probeIndex(tr[0]))
	}
	if !strings.Contains(tr[0].Reason, "3 consecutive failures") || !strings.Contains(tr[0].Reason, "scripted failure") {
		t.Errorf("down reason %q", tr[0].Reason)
	}
	if tr[1].From != StateDown || tr[1].To != StateUp || rec.probeIndex(tr[1]) != 10 || tr[1].ID != "b1" {
		t.Errorf("second transition %+v at probe %d, want down->up at 10", tr[1], rec.probeIndex(tr[1]))
	}
	if !tr[1].Result.OK || !tr[1].Result.HasLoad || tr[1].Time.Before(tr[1].Result.Time) {
		t.Errorf("deciding result %+v, time %v", tr[1].Result, tr[1].Time)
	}
}

func TestMonitorInitialStates(t *testing.T) {
	for _, tc := range []struct {
		initial State
		script  []bool
		want    []State // states after each transition
	}{
		{StateUnknown, []bool{true, true}, []State{StateUp}},
		{StateUnknown, []bool{false, true, true}, []State{StateDown, StateUp}},
		{StateDown, []bool{true, true, true}, []State{StateUp}},
		{StateUp, []bool{true, false, true}, nil},
	} {
		var rec recorder
		opts := rec.options()
		opts.NoStagger = true
		m := NewMonitor(context.Background(), opts)
		s := newScript(tc.script...)
		if err := m.Add(Check{ID: "x", Checker: s, Interval: time.Millisecond, Timeout: time.Millisecond,
			Rise: 2, Fall: 2, Initial: tc.initial}); err != nil {
			t.Fatal(err)
		}
		rec.resultsAtLeast(t, "x", len(tc.script))
		m.Close()
		var got []State
		for _, tr := range rec.transitions() {
			got = append(got, tr.To)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("initial %v, script %v: transitions to %v, want %v", tc.initial, tc.script, got, tc.want)
		}
	}
}

func TestMonitorValidation(t *testing.T) {
	m := NewMonitor(context.Background(), Options{})
	defer m.Close()
	s := newScript(true)
	bad := []Check{
		{Checker: s},
		{ID: "a"},
		{ID: "a", Checker: s, Interval: time.Second, Timeout: 2 * time.Second},
		{ID: "a", Checker: s, Interval: -time.Second},
		{ID: "a", Checker: s, Rise: -1},
		{ID: "a", Checker: s, Initial: 7},
	}
	for _, c := range bad {
		if err := m.Add(c); !errors.Is(err, ErrConfig) {
			t.Errorf("Add(%+v): %v, want ErrConfig", c, err)
		}
	}
	if err := m.Add(Check{ID: "a", Checker: s}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(Check{ID: "a", Checker: s}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if err := m.Remove("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := m.Replace(Check{ID: "nope", Checker: s}); !errors.Is(err, ErrNotFound) {
		t.Errorf("replace unknown: %v", err)
	}
	if _, err := m.Status("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("status unknown: %v", err)
	}
	st, err := m.Status("a")
	if err != nil || st.Checker != "script" || st.State != StateUnknown || st.Reason != "added" {
		t.Errorf("status %+v %v", st, err)
	}
	m.Close()
	if err := m.Add(Check{ID: "b", Checker: s}); !errors.Is(err, ErrClosed) {
		t.Errorf("add after close: %v", err)
	}
}

func TestMonitorStagger(t *testing.T) {
	const n, interval = 16, 600 * time.Millisecond
	for _, stagger := range []bool{true, false} {
		m := NewMonitor(context.Background(), Options{NoStagger: !stagger})
		start := time.Now()
		scripts := make([]*script, n)
		for i := range scripts {
			scripts[i] = newScript(true)
			if err := m.Add(Check{ID: string(rune('a' + i)), Checker: scripts[i], Interval: interval}); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range scripts {
			<-s.done
		}
		m.Close()
		var first, last time.Duration
		for i, s := range scripts {
			d := s.firsts[0].Sub(start)
			if i == 0 || d < first {
				first = d
			}
			last = max(last, d)
		}
		// Generous upper bounds: timers fire late on a loaded machine (and under -race).
		if stagger && (last-first < interval/4 || last > 2*interval) {
			t.Errorf("staggered first probes span %v..%v, want spread within the %v interval", first, last, interval)
		}
		if !stagger && last > interval/2 {
			t.Errorf("unstaggered first probes by %v, want at once", last)
		}
	}
}

// blocker is a Checker that blocks until its context is done and counts how it ended.
type blocker struct {
	started  chan struct{}
	once     sync.Once
	canceled atomic.Int32
	timedOut atomic.Int32
}

func (b *blocker) Check(ctx context.Context) (Report, error) {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		b.timedOut.Add(1)
	} else {
		b.canceled.Add(1)
	}
	return Report{}, ctx.Err()
}

func (b *blocker) String() string { return "blocker" }

func TestMonitorCancellation(t *testing.T) {
	noChecksLeft(t, 0, 0) // earlier tests' checks have exited
	base := 0
	var results atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMonitor(ctx, Options{NoStagger: true, OnResult: func(string, Result) { results.Add(1) }})
	b := &blocker{started: make(chan struct{})}
	if err := m.Add(Check{ID: "blocked", Checker: b, Interval: time.Hour, Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := m.Add(Check{ID: string(rune('a' + i)), Checker: newScript(true), Interval: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	<-b.started
	if got := runChecks() - base; got != 6 {
		t.Fatalf("%d check goroutines, want 6", got)
	}
	cancel() // the parent context stops everything, even a probe in flight
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the context was cancelled")
	}
	if b.canceled.Load() != 1 || b.timedOut.Load() != 0 {
		t.Errorf("blocked probe: canceled %d, timed out %d", b.canceled.Load(), b.timedOut.Load())
	}
	noChecksLeft(t, base, 0)
	after := results.Load()
	time.Sleep(10 * time.Millisecond)
	if results.Load() != after {
		t.Fatal("results reported after Close")
	}
	st := m.Statuses()
	for _, s := range st {
		if s.ID == "blocked" && s.Probes != 0 {
			t.Errorf("a probe cut short by cancellation was recorded: %+v", s)
		}
	}
	m.Close() // idempotent
}

func TestMonitorTimeoutCountsAsFailure(t *testing.T) {
	var rec recorder
	opts := rec.options()
	opts.NoStagger = true
	m := NewMonitor(context.Background(), opts)
	defer m.Close()
	b := &blocker{started: make(chan struct{})}
	if err := m.Add(Check{ID: "slow", Checker: b, Interval: 20 * time.Millisecond, Timeout: 5 * time.Millisecond,
		Fall: 2, Initial: StateUp}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down after timeouts", func() bool { return len(rec.transitions()) == 1 })
	tr := rec.transitions()[0]
	if tr.To != StateDown || tr.Result.OK || tr.Result.Latency < 5*time.Millisecond {
		t.Fatalf("transition %+v", tr)
	}
	if b.timedOut.Load() < 2 {
		t.Fatalf("%d timed-out probes", b.timedOut.Load())
	}
}

func TestMonitorAddRemoveReplace(t *testing.T) {
	noChecksLeft(t, 0, 0) // earlier tests' checks have exited
	base := 0
	var rec recorder
	opts := rec.options()
	opts.NoStagger = true
	opts.History = 4
	m := NewMonitor(context.Background(), opts)
	defer m.Close()
	a, b := newScript(true), newScript(true)
	for id, s := range map[string]*script{"a": a, "b": b} {
		if err := m.Add(Check{ID: id, Checker: s, Interval: 2 * time.Millisecond, Timeout: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both probed 5 times", func() bool { return a.count() >= 5 && b.count() >= 5 })
	if err := m.Remove("a"); err != nil {
		t.Fatal(err)
	}
	noChecksLeft(t, base, 1)
	ac, bc := a.count(), b.count()
	waitFor(t, "b keeps probing", func() bool { return b.count() >= bc+5 })
	if a.count() != ac {
		t.Fatal("removed check still probing")
	}
	if ids := m.IDs(); len(ids) != 1 || ids[0] != "b" {
		t.Fatalf("IDs %v", ids)
	}
	// b is up; replace its checker by one that fails: it keeps its state (no flap), its
	// history, and goes down only after Fall failures of the new checker.
	stBefore, _ := m.Status("b")
	if stBefore.State != StateUp || len(stBefore.Results) != 4 {
		t.Fatalf("b before replace: %+v", stBefore)
	}
	c := newScript(false)
	if err := m.Replace(Check{ID: "b", Checker: c, Interval: 2 * time.Millisecond, Timeout: time.Millisecond, Fall: 3}); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Status("b")
	if st.State != StateUp || st.Checker != "script" || st.Probes < stBefore.Probes {
		t.Fatalf("b after replace: %+v", st)
	}
	waitFor(t, "b down", func() bool { st, _ := m.Status("b"); return st.State == StateDown })
	st, _ = m.Status("b")
	if n := len(st.Results); n != 4 {
		t.Fatalf("history of %d results, want 4", n)
	}
	for i := 1; i < len(st.Results); i++ {
		if st.Results[i].Time.Before(st.Results[i-1].Time) {
			t.Fatal("history not oldest first")
		}
	}
	if last := st.Results[len(st.Results)-1]; last.OK || last.Err != "scripted failure" {
		t.Fatalf("last result %+v", last)
	}
	if c.count() < 3 || st.Failures < 3 {
		t.Fatalf("down after %d probes of the new checker, %d failures", c.count(), st.Failures)
	}
	// Transitions: a and b up (first probe), then b down only.
	var downs int
	for _, tr := range rec.transitions() {
		if tr.To == StateDown {
			downs++
			if tr.ID != "b" || tr.From != StateUp {
				t.Fatalf("unexpected transition %+v", tr)
			}
		}
	}
	if downs != 1 {
		t.Fatalf("%d down transitions", downs)
	}
	// Add again under a removed ID.
	if err := m.Add(Check{ID: "a", Checker: newScript(true), Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	noChecksLeft(t, base, 0)
}

type panicker struct{}

func (panicker) Check(context.Context) (Report, error) { panic("checker bug") }
func (panicker) String() string                        { return "panicker" }

func TestMonitorCheckerPanicIsAFailure(t *testing.T) {
	var rec recorder
	opts := rec.options()
	opts.NoStagger = true
	m := NewMonitor(context.Background(), opts)
	defer m.Close()
	if err := m.Add(Check{ID: "p", Checker: panicker{}, Interval: time.Millisecond, Timeout: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down", func() bool { return len(rec.transitions()) > 0 })
	if tr := rec.transitions()[0]; tr.To != StateDown || !strings.Contains(tr.Reason, "panicked: checker bug") {
		t.Fatalf("transition %+v", tr)
	}
}

func TestMonitorNetnsHook(t *testing.T) {
	var calls atomic.Int32
	hookErr := errors.New("no such namespace")
	m := NewMonitor(context.Background(), Options{NoStagger: true, Netns: func(fn func() error) error {
		if calls.Add(1) > 3 {
			return hookErr // the hook itself failing is a failed probe
		}
		return fn()
	}})
	defer m.Close()
	s := newScript(true)
	if err := m.Add(Check{ID: "n", Checker: s, Interval: time.Millisecond, Timeout: time.Millisecond, Fall: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down through the hook", func() bool { st, _ := m.Status("n"); return st.State == StateDown })
	st, _ := m.Status("n")
	if s.count() != 3 || st.Results[len(st.Results)-1].Err != hookErr.Error() {
		t.Fatalf("checker ran %d times (want 3, all via the hook); status %+v", s.count(), st)
	}
}

// TestMonitorConcurrentOps hammers Add, Remove, Replace and the readers from several
// goroutines (run it with -race): only the expected errors, and no goroutine left behind.
func TestMonitorConcurrentOps(t *testing.T) {
	noChecksLeft(t, 0, 0)
	m := NewMonitor(context.Background(), Options{NoStagger: true, History: 3,
		OnTransition: func(Transition) {}})
	ids := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				id := ids[(i*7+w)%len(ids)]
				c := Check{ID: id, Checker: newScript(i%3 != 0, true), Interval: time.Millisecond, Rise: 1, Fall: 1}
				var err error
				switch (i + w) % 5 {
				case 0, 1:
					err = m.Add(c)
				case 2:
					err = m.Remove(id)
				case 3:
					err = m.Replace(c)
				case 4:
					m.Statuses()
					_, err = m.Status(id)
				}
				if err != nil && !errors.Is(err, ErrExists) && !errors.Is(err, ErrNotFound) {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if n := len(m.IDs()); n > len(ids) {
		t.Fatalf("%d checks", n)
	}
	noChecksLeft(t, 0, len(m.IDs()))
	m.Close()
	noChecksLeft(t, 0, 0)
}
