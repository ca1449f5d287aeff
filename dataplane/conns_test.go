package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// fakeWorkers runs n workers without sockets: each has an engine that saw flows
// flows from clients 198.18.<w>.x and serves listings in a loop as the real one
// does between batches.
func fakeWorkers(t *testing.T, n, flows int) (*Dataplane, *Snapshot) {
	t.Helper()
	s := mustSnapshot(t, nil, spec(t, "web", 0, vip4, 80, MethodNAT, 3), spec(t, "api", 1, vip4, 81, MethodDR, 2))
	for i := range s.services[0].spec.Targets {
		s.services[0].spec.Targets[i].Port = 8080
	}
	d := &Dataplane{}
	d.snap.Store(s)
	ctx, cancel := context.WithCancel(context.Background())
	for id := range n {
		e, err := NewEngine(id, 4096)
		if err != nil {
			t.Fatal(err)
		}
		for i := range flows {
			src := netip.AddrFrom4([4]byte{198, 18, byte(id + 1), byte(i)})
			flags := uint8(encap.TCPFlagSYN)
			if i%2 == 0 {
				flags = 0 // mid-flow: established
			}
			dport := uint16(80 + i%2)
			f := frameOf(craft(t, pktOpts{src: src, dst: vip4, sport: 1000, dport: dport, flags: flags}))
			e.Process(s, []Frame{f}, int64(time.Second))
		}
		w := &worker{id: id, engine: e, start: time.Now().Add(-time.Second)}
		w.running.Store(true)
		d.workers = append(d.workers, w)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				if !w.serveWalk(walkChunk) {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		t.Cleanup(func() { <-done })
	}
	t.Cleanup(cancel)
	return d, s
}

func TestConnsListsEveryWorker(t *testing.T) {
	d, s := fakeWorkers(t, 2, 40)
	ctx := context.Background()
	all, err := d.Conns(ctx, ConnQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if all.Matched != 80 || len(all.Conns) != 80 || all.Capacity != 2*4096 {
		t.Fatalf("matched %d, listed %d, capacity %d", all.Matched, len(all.Conns), all.Capacity)
	}
	var active, inactive uint64
	for _, m := range all.Counts {
		for _, c := range m {
			active, inactive = active+c.Active, inactive+c.Inactive
		}
	}
	if active != 40 || inactive != 40 {
		t.Fatalf("active %d inactive %d, want 40 and 40", active, inactive)
	}
	for _, c := range all.Conns {
		sp := s.serviceByName(c.Service)
		want := fmt.Sprint(c.Worker + 1)
		if c.Client.Addr().As4()[2] != byte(c.Worker+1) || c.Proto != 6 || c.VIP.Port() != sp.Port {
			t.Errorf("entry %+v (worker %s)", c, want)
		}
		if c.Service == "web" && c.Backend.Port() != 8080 || c.Service == "api" && c.Backend.Port() != 81 {
			t.Errorf("entry %+v: backend port", c)
		}
		if (c.State == "ESTABLISHED") != (c.Service == "web") || c.Expires <= 0 {
			t.Errorf("entry %+v: state", c)
		}
	}
	one, err := d.Conns(ctx, ConnQuery{Service: "api", Client: netip.MustParsePrefix("198.18.2.0/24"), Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if one.Matched != 20 || len(one.Conns) != 5 || len(one.Counts) != 1 || one.Counts["api"] == nil {
		t.Fatalf("filtered listing: matched %d, listed %d, counts %v", one.Matched, len(one.Conns), one.Counts)
	}
	for _, c := range one.Conns {
		if c.Worker != 1 || c.Service != "api" {
			t.Errorf("filtered entry %+v", c)
		}
	}
	if _, err := d.Conns(ctx, ConnQuery{Service: "nope"}); !errors.Is(err, ErrNoService) {
		t.Fatalf("unknown service: %v", err)
	}
	runtime.KeepAlive(d)
}

func TestConnsWithoutWorkers(t *testing.T) {
	d := &Dataplane{}
	if _, err := d.Conns(context.Background(), ConnQuery{}); !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("got %v", err)
	}
}

// BenchmarkProcessWhileListing is what a listing costs the data path: batches of 64
// packets of live flows through an engine whose table holds 1M of them, alone ("idle") and
// with one listing step of chunk buckets after every batch, as a worker does while a listing
// is pending: "count" counts every entry per backend (xlb ctl list), "copy" also copies
// every one (xlb ctl conns --limit 1000000). steps/listing is how many batches one full
// listing spans; the worker's step is walkChunk buckets.
func BenchmarkProcessWhileListing(b *testing.B) {
	const flows = 1 << 20
	tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6})
	s := benchSnapshot(b, MethodDR, vip4)
	e, fb := warmEngine(b, s, tmpl, flows, false)
	run := func(b *testing.B, chunk, limit int) {
		r := &connWalk{svc: -1, limit: limit, counts: s.countSlots(), out: make([]sched.Conn, 0, limit)}
		r.fn = r.visit
		var step func()
		if chunk > 0 {
			step = func() {
				if r.at = e.core.Walk(r.at, chunk, 2, r.fn); r.at >= e.core.Buckets() {
					r.at, r.out = 0, r.out[:0]
				}
			}
		}
		timeBatches(b, e, s, fb, step)
		if chunk > 0 {
			b.ReportMetric(float64(e.core.Buckets())/float64(chunk), "steps/listing")
		}
	}
	b.Run("idle", func(b *testing.B) { run(b, 0, 0) })
	for _, chunk := range []int{walkChunk, 64, walkChunkIdle} {
		b.Run(fmt.Sprintf("count/chunk=%d", chunk), func(b *testing.B) { run(b, chunk, 0) })
		b.Run(fmt.Sprintf("copy/chunk=%d", chunk), func(b *testing.B) { run(b, chunk, flows) })
	}
}

// TestConnsCancelled: a listing given up by its caller leaves the workers free for the next.
func TestConnsCancelled(t *testing.T) {
	d, _ := fakeWorkers(t, 2, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Conns(ctx, ConnQuery{Limit: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled listing: %v", err)
	}
	l, err := d.Conns(context.Background(), ConnQuery{Limit: 100})
	if err != nil || l.Matched != 20 {
		t.Fatalf("next listing: %v, %d matched", err, l.Matched)
	}
}

// TestWalkStepAllocatesNothing: a worker's listing step, with the request made by Conns,
// allocates nothing on the worker.
func TestWalkStepAllocatesNothing(t *testing.T) {
	_, s := fakeWorkers(t, 1, 0)
	e, err := NewEngine(9, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		f := frameOf(craft(t, pktOpts{src: netip.AddrFrom4([4]byte{198, 18, 9, byte(i)}), dst: vip4, sport: 1000, dport: 80}))
		e.Process(s, []Frame{f}, int64(time.Second))
	}
	r := &connWalk{svc: -1, limit: 100, counts: s.countSlots(), out: make([]sched.Conn, 0, 100)}
	r.fn = r.visit
	if a := testing.AllocsPerRun(20, func() {
		r.out = r.out[:0]
		for at := 0; at < e.core.Buckets(); {
			at = e.core.Walk(at, walkChunk, int64(time.Second), r.fn)
		}
	}); a != 0 || len(r.out) != 100 {
		t.Fatalf("%v allocations per walk, %d entries", a, len(r.out))
	}
}
