package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults applied to zero fields of a Check (the values of the example in docs/config.md).
const (
	DefaultInterval = time.Second
	DefaultTimeout  = 500 * time.Millisecond
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultHistory  = 10
)

// Check is one health check run by a Monitor.
type Check struct {
	// ID names the check, unique within a Monitor; control uses a backend key such as
	// "web/198.18.0.11:80". It is reported back in every Transition and Status.
	ID string
	// Checker runs the probes.
	Checker Checker
	// Interval is the time from one probe's start to the next (0: DefaultInterval).
	Interval time.Duration
	// Timeout bounds each probe (0: DefaultTimeout); it must not exceed Interval, so a
	// dead target is reported down within Interval*Fall + Timeout.
	Timeout time.Duration
	// Rise is how many consecutive successes bring a down check up (0: DefaultRise).
	Rise int
	// Fall is how many consecutive failures bring an up check down (0: DefaultFall).
	Fall int
	// Initial is the state before any probe. StateUnknown (the default, as Seesaw does)
	// lets the first result decide at once. StateUp is keepalived's default (a real server
	// serves from the start and leaves after Fall failures); StateDown is keepalived's
	// "alpha" mode (no traffic until Rise successes).
	Initial State
}

// withDefaults fills zero fields and validates the rest.
func (c Check) withDefaults() (Check, error) {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultTimeout, c.Interval)
	}
	if c.Rise == 0 {
		c.Rise = DefaultRise
	}
	if c.Fall == 0 {
		c.Fall = DefaultFall
	}
	switch {
	case c.ID == "":
		return c, fmt.Errorf("%w: check without an ID", ErrConfig)
	case c.Checker == nil:
		return c, fmt.Errorf("%w: check %s: no checker", ErrConfig, c.ID)
	case c.Interval < 0 || c.Timeout < 0 || c.Timeout > c.Interval:
		return c, fmt.Errorf("%w: check %s: need 0 < timeout (%v) <= interval (%v)", ErrConfig, c.ID, c.Timeout, c.Interval)
	case c.Rise < 0 || c.Fall < 0:
		return c, fmt.Errorf("%w: check %s: rise and fall must be positive", ErrConfig, c.ID)
	case c.Initial > StateUp:
		return c, fmt.Errorf("%w: check %s: bad initial state %d", ErrConfig, c.ID, c.Initial)
	}
	return c, nil
}

// Transition is a change of a check's state.
type Transition struct {
	ID       string
	From, To State
	Reason   string    // e.g. "3 consecutive failures, last: tcp connect: ... connection refused"
	Time     time.Time // when the deciding probe completed
	Result   Result    // the deciding probe
}

// Status is a snapshot of one check, for the API and metrics.
type Status struct {
	ID      string
	Checker string // Checker.String()
	State   State
	Since   time.Time // last transition, or when the check was added
	Reason  string    // reason of the last transition
	// Probes and Failures count every completed probe and every failed one since Add.
	Probes, Failures uint64
	// Results are the most recent probes, oldest first (at most Options.History).
	Results []Result
}

// Options configure a Monitor. All fields are optional.
type Options struct {
	// OnTransition is called on every state change, from the check's goroutine, in order
	// for one check (checks run concurrently with each other). It must not block for long
	// and must not call Add, Remove or Replace (they may wait for the calling goroutine);
	// Status, Statuses and IDs are fine.
	OnTransition func(Transition)
	// OnResult, when set, is called after every completed probe (for latency metrics and
	// least-load figures), on the same terms as OnTransition and before it.
	OnResult func(id string, r Result)
	// History is how many results are kept per check (0: DefaultHistory).
	History int
	// Netns, when set, runs every probe: it must call fn on a thread switched into the
	// namespace to probe from (e.g. runtime.LockOSThread, netns.Set, fn, restore) and return
	// fn's error. Checkers create all their sockets on the goroutine that runs fn.
	Netns func(fn func() error) error
	// NoStagger starts every check's first probe at once instead of at a random point of
	// its first interval. Staggering spreads the probes of many backends over time.
	NoStagger bool
}

// Monitor runs health checks, one goroutine per check. It is safe for concurrent use.
type Monitor struct {
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	opMu   sync.Mutex // serializes Add, Remove and Replace (held while they wait)
	mu     sync.Mutex // guards checks
	checks map[string]*running
}

// running is one check's goroutine and its state.
type running struct {
	check  Check
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // guards the fields below
	tr       tracker
	since    time.Time
	reason   string
	probes   uint64
	failures uint64
	history  []Result // ring of cap History
	next     int      // next slot in history once full
}

// NewMonitor returns a Monitor whose checks run until ctx is cancelled or Close is called.
func NewMonitor(ctx context.Context, opts Options) *Monitor {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Monitor{opts: opts, ctx: ctx, cancel: cancel, checks: make(map[string]*running)}
}

// Add starts a check. Its first probe runs at a random point of its first interval (unless
// Options.NoStagger). It fails with ErrExists if the ID runs already, ErrConfig if the check
// is invalid, ErrClosed after Close.
func (m *Monitor) Add(c Check) error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	if _, ok := m.checks[c.ID]; ok {
		return fmt.Errorf("%w: %s", ErrExists, c.ID)
	}
	r := &running{check: c, tr: tracker{state: c.Initial, rise: c.Rise, fall: c.Fall}, since: time.Now(),
		reason: "added", history: make([]Result, 0, m.opts.History)}
	m.start(r)
	return nil
}

// start launches r's goroutine; m.mu is held.
func (m *Monitor) start(r *running) {
	ctx, cancel := context.WithCancel(m.ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	m.checks[r.check.ID] = r
	var delay time.Duration
	if !m.opts.NoStagger {
		delay = rand.N(r.check.Interval)
	}
	m.wg.Add(1)
	go m.run(ctx, r, delay)
}

// Remove stops a check and waits until its goroutine has returned: after Remove, no callback
// for that ID runs. No transition is emitted.
func (m *Monitor) Remove(id string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	r, ok := m.checks[id]
	if ok {
		delete(m.checks, id)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	r.cancel()
	<-r.done
	return nil
}

// Replace swaps the checker and settings of a running check (a config reload) and keeps its
// current state, counters and history, so an unchanged backend does not flap; the rise/fall
// counts start again. The check stays listed (Status, Statuses) throughout. It fails with
// ErrNotFound if the ID is not running.
func (m *Monitor) Replace(c Check) error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	old, ok := m.checks[c.ID]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, c.ID)
	}
	old.cancel()
	<-old.done // waited for without m.mu: its callbacks may read the Monitor

	old.mu.Lock()
	r := &running{check: c, tr: tracker{state: old.tr.state, rise: c.Rise, fall: c.Fall},
		since: old.since, reason: old.reason, probes: old.probes, failures: old.failures}
	r.history = make([]Result, 0, m.opts.History)
	hist := old.results()
	r.history = append(r.history, hist[max(0, len(hist)-m.opts.History):]...)
	old.mu.Unlock() // a full history's oldest entry is at index 0: r.next = 0 is right

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	m.start(r) // replaces old in m.checks
	return nil
}

// Close stops every check and waits for all their goroutines. It is idempotent; cancelling
// the Monitor's context stops the checks too, and Close then only waits.
func (m *Monitor) Close() {
	m.mu.Lock()
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
}

// IDs returns the IDs of the running checks, sorted.
func (m *Monitor) IDs() []string {
	m.mu.Lock()
	ids := make([]string, 0, len(m.checks))
	for id := range m.checks {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Status returns a snapshot of one check.
func (m *Monitor) Status(id string) (Status, error) {
	m.mu.Lock()
	r, ok := m.checks[id]
	m.mu.Unlock()
	if !ok {
		return Status{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r.status(), nil
}

// Statuses returns a snapshot of every check, sorted by ID.
func (m *Monitor) Statuses() []Status {
	m.mu.Lock()
	rs := make([]*running, 0, len(m.checks))
	for _, r := range m.checks {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (r *running) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{ID: r.check.ID, Checker: r.check.Checker.String(), State: r.tr.state, Since: r.since,
		Reason: r.reason, Probes: r.probes, Failures: r.failures, Results: r.results()}
}

// results returns the history oldest first; r.mu is held.
func (r *running) results() []Result {
	out := make([]Result, 0, len(r.history))
	if len(r.history) < cap(r.history) {
		return append(out, r.history...)
	}
	out = append(out, r.history[r.next:]...)
	return append(out, r.history[:r.next]...)
}

// record stores a result and runs the state machine.
func (r *running) record(res Result) (Transition, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes++
	if !res.OK {
		r.failures++
	}
	if len(r.history) < cap(r.history) {
		r.history = append(r.history, res)
	} else if cap(r.history) > 0 {
		r.history[r.next] = res
		r.next = (r.next + 1) % cap(r.history)
	}
	from := r.tr.state
	changed, reason := r.tr.observe(res.OK, res.Err)
	if !changed {
		return Transition{}, false
	}
	now := res.Time.Add(res.Latency)
	r.since, r.reason = now, reason
	return Transition{ID: r.check.ID, From: from, To: r.tr.state, Reason: reason, Time: now, Result: res}, true
}

// run is a check's goroutine: probe every Interval until ctx is done.
func (m *Monitor) run(ctx context.Context, r *running, delay time.Duration) {
	defer m.wg.Done()
	defer close(r.done)
	// Probes are due on a fixed grid (like a ticker), so a late timer does not push every
	// later probe back; a probe that misses its slot entirely is skipped, not queued.
	due := time.Now().Add(delay)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res := m.probe(ctx, r.check)
		if ctx.Err() != nil {
			return // a probe cut short by Remove or Close says nothing about the target
		}
		tr, changed := r.record(res)
		if m.opts.OnResult != nil {
			m.opts.OnResult(r.check.ID, res)
		}
		if changed && m.opts.OnTransition != nil {
			m.opts.OnTransition(tr)
		}
		due = due.Add(r.check.Interval)
		if now := time.Now(); due.Before(now) {
			due = now
		}
		timer.Reset(time.Until(due))
	}
}

// probe runs one check with its timeout, in the Netns hook if any, and turns a panicking
// Checker into a failed result rather than a crashed process.
func (m *Monitor) probe(ctx context.Context, c Check) (res Result) {
	// The start first, then the deadline: so a probe that runs into its timeout reports a
	// latency of at least the timeout, even when the goroutine is descheduled in between.
	res.Time = time.Now()
	pctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rep Report
	call := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("checker %s panicked: %v", c.Checker, p)
			}
		}()
		rep, err = c.Checker.Check(pctx)
		return err
	}
	var err error
	if m.opts.Netns != nil {
		err = m.opts.Netns(call)
	} else {
		err = call()
	}
	res.Latency = time.Since(res.Time)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.OK, res.Load, res.HasLoad = true, rep.Load, rep.HasLoad
	res.Weight, res.HasWeight = rep.Weight, rep.HasWeight
	return res
}
