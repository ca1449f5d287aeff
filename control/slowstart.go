package control

import (
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// Slow start (HAProxy's slowstart, nginx's slow_start): a backend that comes back up, is
// added to a running service or is enabled (or undrained) again gets its share of new
// flows ramped over the service's slow_start instead of all at once. The ramp is in the
// weight the scheduler snapshot carries, so it works for every scheduler: the Maglev table
// gives the backend fewer slots, weighted round-robin and random fewer picks, round-robin
// (which ignores weights) runs as weighted round-robin over equal weights meanwhile, and
// least-conn, which compares conns/weight, lets a backend with no connections catch up only
// to its ramped share of the others' connections instead of taking every new flow. The
// controller republishes the service in rampSteps steps.
//
// Backends of a service as it starts (the daemon's start, or a service added by a reload)
// do not ramp: there is nobody to protect them from.

// rampSteps is the number of weight steps of a ramp.
const rampSteps = 20

// minRampStep is the shortest time between two steps.
const minRampStep = 50 * time.Millisecond

// rampState is slow start's memory of one backend.
type rampState struct {
	eligible bool      // up with a weight in the last snapshot
	ever     bool      // it has been eligible before
	atStart  bool      // it was in the service when the service started
	from     time.Time // when the current ramp began; zero: none
}

// slowStartState is slow start's memory of one service.
type slowStartState struct {
	started bool
	ramp    map[uint32]*rampState // by backend ID
}

// slowStart scales (in place) the weights of in while a backend ramps, remembers
// eligibility changes, and returns the strategy to build with. A backend ramps when it
// becomes eligible (up, enabled, weight > 0) after having been so before, or for the first
// time when it was added to the running service; not when it comes up for the first time as
// the service starts. In step k of n of a ramp, a ramping backend has k times its weight and
// every other backend n times its own (so weights as small as 1 ramp too). Round-robin
// ignores weights, so while one of its backends ramps the service is built as weighted
// round-robin over equal weights (1) and the ramped ones.
func (s *svcState) slowStart(in []sched.Backend, now time.Time) ([]sched.Backend, sched.Strategy) {
	rr := s.strategy == sched.RoundRobin
	var orig []uint32
	if rr {
		orig = make([]uint32, len(in))
		for i := range in {
			if orig[i] = in[i].Weight; in[i].Weight > 0 {
				in[i].Weight = 1
			}
		}
	}
	in, ramping := s.ramp(in, now)
	switch {
	case !rr:
		return in, s.strategy
	case ramping:
		return in, sched.WeightedRoundRobin
	}
	for i := range in {
		in[i].Weight = orig[i]
	}
	return in, s.strategy
}

// ramp does slowStart's bookkeeping and weight scaling; it reports whether a backend of in
// is ramping.
func (s *svcState) ramp(in []sched.Backend, now time.Time) ([]sched.Backend, bool) {
	ss := &s.ss
	first := !ss.started
	ss.started = true
	if ss.ramp == nil {
		ss.ramp = map[uint32]*rampState{}
	}
	d := s.cfg.SlowStart
	steps := make([]int64, len(in)) // the step (1..n) of a ramping backend, else 0
	ramping := false
	for i := range in {
		b := &in[i]
		el := b.Up && b.Weight > 0
		r := ss.ramp[b.ID]
		if r == nil {
			r = &rampState{atStart: first}
			ss.ramp[b.ID] = r
		}
		if el && !r.eligible && (r.ever || !r.atStart) {
			r.from = now
		}
		r.eligible, r.ever = el, r.ever || el
		if r.from.IsZero() {
			continue
		}
		if k, _, ok := rampStepAt(now.Sub(r.from), d); ok && el {
			steps[i], ramping = k, true
		} else if !ok {
			r.from = time.Time{}
		}
	}
	if ramping {
		_, n, _ := rampStepAt(0, d)
		for i := range in {
			if k := steps[i]; k > 0 {
				in[i].Weight *= uint32(k)
			} else {
				in[i].Weight *= uint32(n)
			}
		}
	}
	if len(ss.ramp) > 2*len(in)+8 { // backends removed: forget them
		keep := make(map[uint32]*rampState, len(in))
		for _, b := range in {
			keep[b.ID] = ss.ramp[b.ID]
		}
		ss.ramp = keep
	}
	return in, ramping
}

// rampStep is the time between two weight steps of a ramp of length d.
func rampStep(d time.Duration) time.Duration { return max(d/rampSteps, minRampStep) }

// rampStepAt returns the step k (1..n) of a ramp of length d, elapsed into it, and the
// number of steps n; false once the ramp is over (or d is 0).
func rampStepAt(elapsed, d time.Duration) (k, n int64, ok bool) {
	if d <= 0 || elapsed >= d || elapsed < 0 {
		return 0, 0, false
	}
	step := rampStep(d)
	return int64(elapsed/step) + 1, int64((d + step - 1) / step), true
}

// rampNext returns when the next ramp step of s is due (zero: no ramp under way).
func (s *svcState) rampNext(now time.Time) time.Time {
	d := s.cfg.SlowStart
	if d <= 0 {
		return time.Time{}
	}
	step := rampStep(d)
	var next time.Time
	for _, r := range s.ss.ramp {
		if r.from.IsZero() || !r.eligible {
			continue
		}
		elapsed := now.Sub(r.from)
		at := r.from.Add(min((elapsed/step+1)*step, d))
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// scheduleRampLocked arms the timer that republishes at the next ramp step of any
// service. Called with c.mu held, after a publish.
func (c *Controller) scheduleRampLocked(now time.Time) {
	var next time.Time
	for _, s := range c.services {
		if at := s.rampNext(now); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() || c.closed {
		return
	}
	if c.rampAt.Equal(next) && c.rampTimer != nil {
		return
	}
	if c.rampTimer != nil {
		c.rampTimer.Stop()
	}
	c.rampAt = next
	c.rampTimer = time.AfterFunc(max(time.Until(next), 0), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.rampTimer, c.rampAt = nil, time.Time{}
		if !c.closed {
			_ = c.publishLocked("slow start")
		}
	})
}
