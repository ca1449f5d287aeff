package sched

import "testing"

// TestScheduleAllocs proves the per-packet path allocates nothing once the core has seen the
// snapshot: hits, misses with inserts and evictions, rescheduling, for every strategy.
func TestScheduleAllocs(t *testing.T) {
	for s := range numStrategies {
		svc := mustService(t, ServiceConfig{Strategy: s, TableSize: 4093}, weighted(1, 2, 3, 0, 5))
		c := mustCore(t, CoreConfig{Capacity: 1 << 10})
		c.Prepare(svc)
		k := flowKey(1)
		c.Schedule(svc, &k, FlagSYN, 0)
		if n := testing.AllocsPerRun(1000, func() { c.Schedule(svc, &k, FlagACK, 1) }); n != 0 {
			t.Errorf("%v: hit: %v allocs", s, n)
		}
		i := uint32(100)
		if n := testing.AllocsPerRun(5000, func() { // fills and then evicts
			i++
			k := flowKey(i)
			c.Schedule(svc, &k, FlagSYN, int64(i))
		}); n != 0 {
			t.Errorf("%v: miss+insert: %v allocs", s, n)
		}
		// Rescheduling: backend 0 goes down in a snapshot the core has seen.
		down := weighted(1, 2, 3, 0, 5)
		down[0].Up = false
		svc2 := mustService(t, ServiceConfig{Strategy: s, TableSize: 4093}, down)
		c.Prepare(svc2)
		if n := testing.AllocsPerRun(1000, func() {
			i++
			k := flowKey(i % 6000)
			c.Schedule(svc2, &k, FlagACK, int64(i))
		}); n != 0 {
			t.Errorf("%v: reschedule: %v allocs", s, n)
		}
		if n := testing.AllocsPerRun(100, func() { c.Maintain(int64(i) + 1e12) }); n != 0 {
			t.Errorf("%v: Maintain: %v allocs", s, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = c.Stats() }); n != 0 {
			t.Errorf("%v: Stats: %v allocs", s, n)
		}
	}
	c := mustCore(t, CoreConfig{Capacity: 1 << 10})
	svc := mustService(t, ServiceConfig{}, backends(3))
	keys := make([]Key, 64)
	hs := make([]uint64, 64)
	for i := range keys {
		keys[i] = flowKey(uint32(i))
	}
	c.Prepare(svc)
	if n := testing.AllocsPerRun(100, func() {
		c.PrefetchBatch(keys, hs)
		for i := range keys {
			c.ScheduleHashed(svc, &keys[i], hs[i], FlagACK, 1)
		}
	}); n != 0 {
		t.Errorf("PrefetchBatch+ScheduleHashed: %v allocs", n)
	}
	k := flowKey(3)
	hk := DefaultHashKey()
	if n := testing.AllocsPerRun(1000, func() { _ = c.Hash(&k); _ = hk.Flow(&k); _ = hk.Source(&k); _ = svc.FlowHash(&k) }); n != 0 {
		t.Errorf("Hash: %v allocs", n)
	}
}

// TestPrepareAllocs: control rebuilds every service on any change, so a worker prepares a
// new snapshot of the same size often; once the core has seen one, that allocates nothing.
func TestPrepareAllocs(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 64})
	a := mustService(t, ServiceConfig{Index: 4, Strategy: LeastConn}, backends(10))
	b := mustService(t, ServiceConfig{Index: 4, Strategy: LeastConn}, backends(10))
	c.Prepare(a)
	c.Prepare(b)
	flip := false
	if n := testing.AllocsPerRun(100, func() {
		if flip = !flip; flip {
			c.Prepare(a)
		} else {
			c.Prepare(b)
		}
	}); n != 0 {
		t.Errorf("Prepare of a same-size snapshot: %v allocs", n)
	}
}
