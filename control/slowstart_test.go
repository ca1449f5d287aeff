package control

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/sched"
)

// TestSlowStartRamp: backends up as the service starts do not ramp; one that comes back
// up, one added later and one undrained ramp from a small weight to their full weight in
// rampSteps steps; the ramp ends after slow_start.
func TestSlowStartRamp(t *testing.T) {
	s := &svcState{cfg: config.Service{SlowStart: 20 * time.Second}}
	t0 := time.Unix(1000, 0)
	bs := func(up ...bool) []sched.Backend {
		out := make([]sched.Backend, len(up))
		for i, u := range up {
			out[i] = sched.Backend{ID: uint32(i + 1), Name: string(rune('a' + i)), Weight: 100, Up: u}
		}
		return out
	}
	weights := func(in []sched.Backend, _ sched.Strategy) []uint32 {
		w := make([]uint32, len(in))
		for i, b := range in {
			w[i] = b.Weight
		}
		return w
	}
	// Start: everything down until its first check, then up: no ramp.
	s.slowStart(bs(false, false), t0)
	if w := weights(s.slowStart(bs(true, true), t0.Add(time.Second))); w[0] != 100 || w[1] != 100 {
		t.Fatalf("first up at start ramped: %v", w)
	}
	if !s.rampNext(t0.Add(time.Second)).IsZero() {
		t.Error("a ramp is scheduled with none under way")
	}
	// Backend 1 goes down and comes back at t0+10s; backend 3 is added at the same time.
	s.slowStart(bs(false, true), t0.Add(5*time.Second))
	back := t0.Add(10 * time.Second)
	var prev float64
	for i := range 21 {
		now := back.Add(time.Duration(i) * time.Second)
		w := weights(s.slowStart(bs(true, true, true), now))
		// In step k of 20: the ramping backends weigh 100*k, the others 100*20.
		switch {
		case i < 20 && (w[0] != uint32(100*(i+1)) || w[2] != w[0] || w[1] != 2000):
			t.Errorf("%v into the ramp: weights %v, want %d for backends 1 and 3, 2000 for 2", now.Sub(back), w, 100*(i+1))
		case i == 20 && (w[0] != 100 || w[1] != 100 || w[2] != 100):
			t.Errorf("after the ramp: %v", w)
		}
		if share := float64(w[0]) / float64(w[1]); share < prev {
			t.Errorf("the ramp went down: %.2f of backend 2's weight after %.2f", share, prev)
		} else {
			prev = share
		}
		if next := s.rampNext(now); i < 20 && (!next.After(now) || next.Sub(now) > time.Second) {
			t.Errorf("at %v the next step is at %v", now.Sub(back), next.Sub(back))
		}
	}
	// Drained to weight 0 and back: ramps again.
	drain := bs(true, true, true)
	drain[1].Weight = 0
	later := back.Add(time.Minute)
	s.slowStart(drain, later)
	if w := weights(s.slowStart(bs(true, true, true), later.Add(time.Second))); w[1] != 100 || w[0] != 2000 {
		t.Errorf("undrained backend: weights %v, want 100 against 2000", w)
	}
	// A weight of 1 ramps too.
	one := &svcState{cfg: config.Service{SlowStart: 20 * time.Second}}
	small := []sched.Backend{{ID: 1, Name: "a", Weight: 1, Up: true}, {ID: 2, Name: "b", Weight: 1, Up: true}}
	one.slowStart(small, t0)
	small[0].Up = false
	one.slowStart(small, t0.Add(time.Second))
	small = []sched.Backend{{ID: 1, Name: "a", Weight: 1, Up: true}, {ID: 2, Name: "b", Weight: 1, Up: true}}
	if w := weights(one.slowStart(small, t0.Add(2*time.Second))); w[0] != 1 || w[1] != 20 {
		t.Errorf("weight 1 back up: weights %v, want 1 against 20", w)
	}
	// Without slow_start nothing ramps.
	off := &svcState{}
	off.slowStart(bs(true), t0)
	off.slowStart(bs(false), t0.Add(time.Second))
	if w := weights(off.slowStart(bs(true), t0.Add(2*time.Second))); w[0] != 100 {
		t.Errorf("slow_start 0 ramped: %v", w)
	}
}

// TestReloadConnTableNeedsRestart: the tables are made at start, so a reload that changes
// conn_table is refused; one that changes a service's persistence, one_packet or slow_start
// applies.
func TestReloadConnTableNeedsRestart(t *testing.T) {
	r := newRig(t, twoSvc)
	y := strings.Replace(twoSvc, "interfaces: [{name: eth0}]", "interfaces: [{name: eth0}]\nconn_table: {timeouts: {tcp: 60s}}", 1)
	if err := r.c.Reload(r.parse(y)); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("reload changing conn_table: %v, want ErrRestartRequired", err)
	}
	y = strings.Replace(twoSvc, "    port: 80\n", "    port: 80\n    slow_start: 5s\n    persistence: {timeout: 60s, prefix: 24}\n", 1)
	if err := r.c.Reload(r.parse(y)); err != nil {
		t.Fatalf("reload adding persistence: %v", err)
	}
	snap := r.c.Snapshot()
	if p := snap.Service(0).Sched.Persistence(); p.Timeout != time.Minute || p.Prefix4 != 24 {
		t.Errorf("published persistence %+v", p)
	}
}

// TestSlowStartAcrossReload: the controller ramps a backend added by a reload, and one that
// comes back up, but not the backends as the service starts.
func TestSlowStartAcrossReload(t *testing.T) {
	const y = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    scheduler: least-conn
    slow_start: 1h
    backends:
      - {name: a, address: 198.18.0.11}
      - {name: b, address: 198.18.0.12}
    health: {kind: tcp, interval: 1s, timeout: 500ms}
`
	r := newRig(t, y)
	r.prober.fire("web/a", health.StateUp)
	r.prober.fire("web/b", health.StateUp)
	if a, b := r.backend("web", "a"), r.backend("web", "b"); a.Weight != 100 || b.Weight != 100 {
		t.Fatalf("first up at start: weights %d %d, want 100 100", a.Weight, b.Weight)
	}
	must(t, r.c.Reload(r.parse(strings.Replace(y, "      - {name: b", "      - {name: c, address: 198.18.0.13}\n      - {name: b", 1))))
	r.prober.fire("web/c", health.StateUp)
	if c, b := r.backend("web", "c"), r.backend("web", "b"); c.Weight != 100 || b.Weight != 2000 || !c.Up {
		t.Errorf("backend added by a reload: weight %d (up %v) against %d, want 100 against 2000 (step 1 of 20)", c.Weight, c.Up, b.Weight)
	}
	r.prober.fire("web/a", health.StateDown)
	r.prober.fire("web/a", health.StateUp)
	if a, b := r.backend("web", "a"), r.backend("web", "b"); a.Weight != 100 || b.Weight != 2000 {
		t.Errorf("backend back up after a reload: weight %d against %d, want 100 against 2000", a.Weight, b.Weight)
	}
}

// TestSlowStartRoundRobin: round-robin ignores weights, so while a backend ramps the
// service is built as weighted round-robin over equal weights and the ramped one; after
// the ramp it is round-robin again.
func TestSlowStartRoundRobin(t *testing.T) {
	s := &svcState{cfg: config.Service{SlowStart: 10 * time.Second}, strategy: sched.RoundRobin}
	t0 := time.Unix(1000, 0)
	bs := func(upA bool) []sched.Backend {
		return []sched.Backend{{ID: 1, Name: "a", Weight: 7, Up: upA}, {ID: 2, Name: "b", Weight: 3, Up: true}}
	}
	if _, st := s.slowStart(bs(true), t0); st != sched.RoundRobin {
		t.Errorf("no ramp: strategy %v", st)
	}
	s.slowStart(bs(false), t0.Add(time.Second))
	in, st := s.slowStart(bs(true), t0.Add(2*time.Second))
	if st != sched.WeightedRoundRobin || in[0].Weight != 1 || in[1].Weight != 20 {
		t.Errorf("ramping under rr: %v, weights %d %d; want wrr, 1 against 20 (equal weights, step 1 of 20)", st, in[0].Weight, in[1].Weight)
	}
	svc, err := sched.NewService(sched.ServiceConfig{Strategy: st}, in)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := sched.NewCore(sched.CoreConfig{Capacity: 1024})
	got := map[int]int{}
	for i := range 21 {
		k := sched.Key{SrcPort: uint16(i), Proto: 6}
		got[c.Schedule(svc, &k, sched.FlagSYN, 1)]++
	}
	if got[0] != 1 || got[1] != 20 {
		t.Errorf("21 new flows: %v, want 1 on the ramping backend", got)
	}
	if in, st := s.slowStart(bs(true), t0.Add(13*time.Second)); st != sched.RoundRobin || in[0].Weight != 7 || in[1].Weight != 3 {
		t.Errorf("after the ramp: strategy %v, weights %d %d; want rr with the configured 7 and 3", st, in[0].Weight, in[1].Weight)
	}
}
