package dataplane

import (
	"testing"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// TestEngineFlowStats: per-service and per-backend packets, bytes and new flows match the
// traffic sent, no-backend drops are counted per service, and the counts survive a snapshot
// change that moves the service and its backends to other positions.
func TestEngineFlowStats(t *testing.T) {
	e := newEngine(t)
	web := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	dead := spec(t, "dead", 1, vip4, 81, MethodDR, 1)
	bs := []sched.Backend{{ID: 1, Name: "b0", Weight: 1, Up: false}}
	sv, err := sched.NewService(sched.ServiceConfig{Index: 1}, bs)
	if err != nil {
		t.Fatal(err)
	}
	dead.Sched = sv
	s1 := mustSnapshot(t, nil, web, dead)

	want := map[int][3]uint64{} // backend position -> packets, bytes, flows
	var total [3]uint64
	send := func(s *Snapshot, port uint16, flags uint8) int {
		pkt := craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80, flags: flags, payload: int(port % 7)})
		f := frameOf(pkt)
		run(e, s, &f)
		b := backendOf(t, &f)
		w := want[b]
		w[0]++
		w[1] += uint64(len(pkt))
		if flags == encap.TCPFlagSYN {
			w[2]++
		}
		want[b] = w
		total[0]++
		total[1] += uint64(len(pkt))
		if flags == encap.TCPFlagSYN {
			total[2]++
		}
		return b
	}
	for port := uint16(1000); port < 1060; port++ {
		send(s1, port, encap.TCPFlagSYN)
		send(s1, port, 0)
		send(s1, port, 0)
	}
	for range 5 {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 7, dport: 81}))
		run(e, s1, &f)
	}
	check := func(when string, st []ServiceStats, webIdx int, pos map[int]int) {
		t.Helper()
		w := st[webIdx]
		if w.Name != "web" || w.Packets != total[0] || w.Bytes != total[1] || w.NewFlows != total[2] || w.NoBackend != 0 {
			t.Errorf("%s: web %+v, want packets %d bytes %d new flows %d", when, w, total[0], total[1], total[2])
		}
		for b, c := range want {
			got := w.Backends[pos[b]]
			if got.Packets != c[0] || got.Bytes != c[1] || got.NewFlows != c[2] {
				t.Errorf("%s: backend %d: %+v, want %v", when, b, got, c)
			}
		}
		for i := range st {
			if st[i].Name == "dead" && (st[i].NoBackend != 5 || st[i].Packets != 5 || st[i].Backends[0].Packets != 0) {
				t.Errorf("%s: dead %+v, want 5 no-backend drops", when, st[i])
			}
		}
	}
	check("first snapshot", e.FlowStats(), 0, map[int]int{0: 0, 1: 1, 2: 2})
	if len(want) != 3 {
		t.Fatalf("flows reached %d backends of 3", len(want))
	}

	// The services swap places and web's backends are reordered (IDs 3, 1, 2): the counts
	// follow them, and new traffic adds to them.
	bs2 := []sched.Backend{
		{ID: 3, Name: "b2", Weight: 1, Up: true},
		{ID: 1, Name: "b0", Weight: 1, Up: true},
		{ID: 2, Name: "b1", Weight: 1, Up: true},
	}
	sv2, err := sched.NewService(sched.ServiceConfig{Index: 0}, bs2)
	if err != nil {
		t.Fatal(err)
	}
	web2 := web
	web2.Sched = sv2
	web2.Targets = []Target{web.Targets[2], web.Targets[0], web.Targets[1]}
	dead.Sched, err = sched.NewService(sched.ServiceConfig{Index: 1}, bs)
	if err != nil {
		t.Fatal(err)
	}
	s2 := mustSnapshot(t, nil, dead, web2)
	// backendOf reads the MAC, which names the original position: map it back.
	newPos := map[int]int{2: 0, 0: 1, 1: 2}
	for port := uint16(1000); port < 1020; port++ {
		send(s2, port, 0) // known flows
	}
	for port := uint16(2000); port < 2010; port++ {
		send(s2, port, encap.TCPFlagSYN)
	}
	check("after the change", e.FlowStats(), 1, newPos)
}

// TestFlowStatsDirtyOverflow: more touched entries than the dirty list holds are published
// all at once.
func TestFlowStatsDirtyOverflow(t *testing.T) {
	s, f := flowsOfServices(t, 3, 1)
	f.dirtySvc = f.dirtySvc[:0:1] // room for one
	countAt(f, s, 0, 0, 10, true)
	countAt(f, s, 1, 0, 20, false)
	countAt(f, s, 2, -1, 30, false)
	f.publish()
	out := emptyFlowStats(s)
	addFlowCounts(out, s, f.pub.Load())
	if out[1].Bytes != 20 || out[2].NoBackend != 1 || out[0].Backends[0].NewFlows != 1 || out[0].NewFlows != 1 ||
		out[0].Packets != 1 || out[2].Packets != 1 || out[2].Bytes != 30 {
		t.Fatalf("%+v", out)
	}
	if f.all || len(f.dirtySvc) != 0 {
		t.Fatal("dirty state not reset by publish")
	}
}

// TestFlowStatsDirtyOnce: a batch whose packets alternate between backends lists each
// touched entry once (it used to list it again whenever another backend's packet came in
// between, and publish stored it as many times), the published counts are the worker's,
// and the next batch lists its entries afresh.
func TestFlowStatsDirtyOnce(t *testing.T) {
	s := mustSnapshot(t, nil, spec(t, "web", 0, vip4, 80, MethodDR, 3))
	f := new(flows)
	f.relayout(s)
	for batch := 1; batch <= 3; batch++ {
		for i := range 64 {
			countAt(f, s, 0, i%3, 100, i < 3)
		}
		// The service is listed when its backends are published (see fold).
		if len(f.dirtySvc) != 0 || len(f.dirtyBE) != 3 || f.all {
			t.Fatalf("batch %d: dirty lists %v %v (all %v), want each entry once", batch, f.dirtySvc, f.dirtyBE, f.all)
		}
		f.publish()
		out := emptyFlowStats(s)
		addFlowCounts(out, s, f.pub.Load())
		if got, want := out[0].Packets, uint64(64*batch); got != want {
			t.Fatalf("batch %d: %d packets published, want %d", batch, got, want)
		}
		if got, want := out[0].Bytes, uint64(6400*batch); got != want || out[0].NewFlows != uint64(3*batch) {
			t.Fatalf("batch %d: %d bytes and %d new flows published, want %d and %d", batch, got, out[0].NewFlows, want, 3*batch)
		}
		for j, be := range out[0].Backends {
			if want := uint64((21 + b2u(j == 0)) * batch); be.Packets != want || be.NewFlows != uint64(batch) {
				t.Fatalf("batch %d backend %d: %+v, want %d packets, %d new flows", batch, j, be, want, batch)
			}
		}
	}
	f.epoch = ^uint32(0) // the next publish wraps the epoch
	countAt(f, s, 0, 1, 1, false)
	f.publish()
	if f.epoch != 1 || f.markBE[1] != 0 {
		t.Fatalf("after the wrap: epoch %d, mark %d; want 1 and cleared marks", f.epoch, f.markBE[1])
	}
	countAt(f, s, 0, 1, 1, false)
	if len(f.dirtyBE) != 1 {
		t.Fatalf("after the wrap: dirty %v", f.dirtyBE)
	}
}

// flowsOfServices returns a snapshot of n dr services ("a", "b", ...) of backends backends
// each, and counters laid out for it.
func flowsOfServices(t *testing.T, n, backends int) (*Snapshot, *flows) {
	t.Helper()
	var svcs []ServiceSpec
	for i := range n {
		svcs = append(svcs, spec(t, string(rune('a'+i)), i, vip4, uint16(80+i), MethodDR, backends))
	}
	s := mustSnapshot(t, nil, svcs...)
	f := new(flows)
	f.relayout(s)
	return s, f
}

// countAt counts as forward does: on backend bi of service si of s, or, when bi is -1, as
// a packet no backend took.
func countAt(f *flows, s *Snapshot, si, bi int, n uint64, isNew bool) {
	if bi < 0 {
		f.noBackend(si, n)
		return
	}
	if b := s.services[si].targets[bi].flow; f.count(b, n, isNew) {
		f.touchBE(b)
	}
}

// TestTargetFlowIndex: a target's flow index is its entry in the counters' layout.
func TestTargetFlowIndex(t *testing.T) {
	s := mustSnapshot(t, nil, spec(t, "a", 0, vip4, 80, MethodDR, 3), spec(t, "b", 1, vip4, 81, MethodDR, 2),
		spec(t, "c", 2, vip4, 82, MethodDR, 4))
	fc := newFlowCounts(s)
	for i := range s.services {
		for j, tg := range s.services[i].targets {
			if int(tg.flow) != int(fc.base[i])+j || fc.owner[tg.flow] != int32(i) {
				t.Fatalf("service %d target %d: flow %d, base %d, owner %d", i, j, tg.flow, fc.base[i], fc.owner[tg.flow])
			}
		}
	}
}

// TestFlowStatsFoldOverflow: backends of more services than the service list holds fold
// into their services all the same, the all-at-once publish included.
func TestFlowStatsFoldOverflow(t *testing.T) {
	s, f := flowsOfServices(t, 4, 2)
	f.dirtySvc = f.dirtySvc[:0:2] // room for two services: the fold overflows it
	for round := 1; round <= 2; round++ {
		if round == 2 {
			f.dirtyBE = f.dirtyBE[:0:0] // and now the backends' list: publish takes every entry
		}
		for i := range 4 {
			countAt(f, s, i, 0, uint64(10*(i+1)), true)
			countAt(f, s, i, 1, 1, false)
		}
		if round == 2 && !f.all {
			t.Fatal("the backends' list did not overflow")
		}
		f.publish()
		out := emptyFlowStats(s)
		addFlowCounts(out, s, f.pub.Load())
		for i := range 4 {
			want := ServiceStats{Packets: uint64(2 * round), Bytes: uint64(round * (10*(i+1) + 1)), NewFlows: uint64(round)}
			if o := out[i]; o.Packets != want.Packets || o.Bytes != want.Bytes || o.NewFlows != want.NewFlows {
				t.Fatalf("round %d service %d: %d packets %d bytes %d new, want %+v", round, i, o.Packets, o.Bytes, o.NewFlows, want)
			}
		}
	}
}

func b2u(b bool) int {
	if b {
		return 1
	}
	return 0
}
