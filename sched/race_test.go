package sched

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestRaceSnapshotPublish has a writer publish new snapshots (backends going down and up,
// weights changing) through atomic.Pointer while readers, each with its own Core, schedule
// flows and read each other's Stats. Run with -race. Every answer must name a backend of the
// snapshot the reader loaded that is up.
func TestRaceSnapshotPublish(t *testing.T) {
	var cur atomic.Pointer[Service]
	base := weighted(1, 2, 3, 4)
	cur.Store(mustService(t, ServiceConfig{Index: 2, Strategy: LeastConn}, base))

	const readers = 3
	cores := make([]*Core, readers)
	for i := range cores {
		cores[i] = mustCore(t, CoreConfig{ID: i, Capacity: 1 << 12})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer: control
		defer wg.Done()
		var b Builder
		strategies := []Strategy{Maglev, LeastConn, RoundRobin, WeightedRoundRobin, SourceHash, LeastLoad, Random}
		for gen := 0; gen < 300; gen++ {
			bs := append([]Backend(nil), base...)
			bs[gen%4].Up = gen%3 != 0
			bs[(gen+1)%4].Weight = uint32(gen % 5)
			bs[(gen+2)%4].Load = float64(gen%10) / 10
			s, err := b.Build(ServiceConfig{Index: 2, Strategy: strategies[gen%len(strategies)], TableSize: 4093}, bs)
			if err != nil {
				t.Error(err)
				break
			}
			cur.Store(s)
		}
		close(stop)
	}()
	var bad atomic.Int64
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cores[r]
			now := int64(0)
			for batch := uint32(0); ; batch++ {
				select {
				case <-stop:
					return
				default:
				}
				s := cur.Load() // once per batch
				now += 1000
				for i := range uint32(64) {
					k := flowKey((batch*64 + i) % 5000)
					p := c.Schedule(s, &k, FlagACK, now)
					if p >= 0 && !s.Backend(p).Up {
						bad.Add(1)
					}
				}
				c.Maintain(now)
				_ = cores[(r+1)%readers].Stats() // another core's counters
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d packets sent to a backend that was down in the loaded snapshot", n)
	}
	var hits uint64
	for _, c := range cores {
		hits += c.Stats().Hits
	}
	if hits == 0 {
		t.Error("no connection-table hits at all")
	}
}
