package sched

import (
	"testing"
	"time"
)

// TestWalkSeesEveryLiveEntry fills a table, walks it in steps and checks
// every live flow is seen once with its backend, state and time left, and an
// idle-expired one is not.
func TestWalkSeesEveryLiveEntry(t *testing.T) {
	svc := mustService(t, ServiceConfig{Index: 3, Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 4096})
	want := map[Key]int{}
	for i := range uint32(1000) {
		k := flowKey(i)
		flags := FlagSYN
		if i%2 == 1 {
			flags = FlagACK
		}
		want[k] = c.Schedule(svc, &k, flags, 0)
	}
	udp := flowKey(5000)
	udp.Proto = protoUDP
	c.Schedule(svc, &udp, 0, 0)
	// An entry that is idle-expired by the time of the walk (SYN_RECV: 60s).
	now := 61 * sec
	if k := flowKey(0); c.Schedule(svc, &k, FlagACK, 30*sec) < 0 { // flow 0 was SYN_RECV
		t.Fatal("no backend")
	}
	seen := map[Key]Conn{}
	steps := 0
	for at := 0; at < c.Buckets(); steps++ {
		at = c.Walk(at, 50, now, func(e Conn) {
			if _, dup := seen[e.Key]; dup {
				t.Fatalf("entry %v seen twice", e.Key)
			}
			seen[e.Key] = e
		})
	}
	if steps != (c.Buckets()+49)/50 {
		t.Fatalf("%d steps for %d buckets", steps, c.Buckets())
	}
	active := 0
	for k, e := range seen {
		if k == udp {
			if e.State != ConnUDP || e.State.Active() || e.State.String() != "UDP" {
				t.Errorf("udp entry %+v", e)
			}
			continue
		}
		if e.Service != 3 || e.Backend != svc.Backend(want[k]).ID {
			t.Errorf("entry %+v: want backend %d", e, svc.Backend(want[k]).ID)
		}
		if e.State.Active() {
			active++
			if e.State.String() != "ESTABLISHED" || e.Expires <= 800*time.Second || e.Expires > 900*time.Second {
				t.Errorf("established entry %+v", e)
			}
		}
	}
	// 500 established at 0 (900s), 1 moved to established at 30s; the 499
	// others are SYN_RECV from time 0 and idle-expired at 61s.
	if active != 501 || len(seen) != 502 {
		t.Fatalf("saw %d entries, %d active; want 502, 501", len(seen), active)
	}
	if got := c.Walk(c.Buckets(), 10, now, func(Conn) { t.Fatal("walked past the end") }); got != c.Buckets() {
		t.Fatalf("walk past the end returned %d", got)
	}
}

func TestWalkAllocatesNothing(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 4096})
	for i := range uint32(1000) {
		k := flowKey(i)
		c.Schedule(svc, &k, FlagACK, 0)
	}
	n := 0
	fn := func(Conn) { n++ }
	if a := testing.AllocsPerRun(10, func() { c.Walk(0, c.Buckets(), sec, fn) }); a != 0 {
		t.Fatalf("%v allocations per walk", a)
	}
	if n != 11000 {
		t.Fatalf("%d entries over 11 walks", n)
	}
}

// TestReusedTupleIsScheduledAfresh: a SYN on the tuple of a closed connection whose
// backend was drained meanwhile goes to another backend (IPVS conn_reuse_mode 1), and
// counts as a new flow; a SYN retransmitted on a live connection stays.
func TestReusedTupleIsScheduledAfresh(t *testing.T) {
	bs := backends(2)
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, bs)
	c := mustCore(t, CoreConfig{Capacity: 1024})
	k := flowKey(1)
	p := c.Schedule(svc, &k, FlagSYN, 0)
	if c.Schedule(svc, &k, FlagSYN, sec) != p {
		t.Fatal("a retransmitted SYN moved")
	}
	c.Schedule(svc, &k, FlagACK|FlagFIN, 2*sec)
	bs[p].Weight = 0 // drained
	drained := mustService(t, ServiceConfig{Strategy: RoundRobin}, bs)
	ins := c.Inserts()
	if got := c.Schedule(drained, &k, FlagSYN, 3*sec); got == p || got < 0 {
		t.Fatalf("the reused tuple went to %d (drained: %d)", got, p)
	}
	if c.Inserts() != ins+1 {
		t.Fatal("the new connection was not counted as a new flow")
	}
}
