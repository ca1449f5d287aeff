package dataplane

import (
	"sync/atomic"
	"time"
)

// Active flows per backend: each worker's connection table knows how many of its entries
// point at each backend (sched.Core.ActiveFlows, owner only). A worker copies those figures
// into a published block at most every activeEvery, after a batch; readers add the blocks
// of all workers up.

// activeEvery bounds how often a worker publishes its active-flow figures.
const activeEvery = 100 * time.Millisecond

// activeBlock is one worker's published figures for snapshot snap: per service, per
// backend position.
type activeBlock struct {
	snap *Snapshot
	n    [][]atomic.Int64
}

type activeFlows struct {
	pub  atomic.Pointer[activeBlock]
	last int64 // when the worker last published (ns since the workers started)
}

// publish copies the engine's per-backend active flows, when activeEvery has passed since
// the last time. Owner only. Allocates only when the engine's snapshot is new to it.
func (a *activeFlows) publish(e *Engine, now int64) {
	s := e.last
	if s == nil || (now-a.last < int64(activeEvery) && a.last != 0) {
		return
	}
	a.last = now
	b := a.pub.Load()
	if b == nil || b.snap != s {
		b = &activeBlock{snap: s, n: make([][]atomic.Int64, len(s.services))}
		for i := range s.services {
			b.n[i] = make([]atomic.Int64, len(s.services[i].targets))
		}
		a.pub.Store(b)
	}
	for i := range s.services {
		sv := s.services[i].spec.Sched
		for j := range b.n[i] {
			b.n[i][j].Store(int64(e.core.ActiveFlows(sv, j)))
		}
	}
}

// ActiveFlows returns, per service name and backend scheduler ID, the connection-table
// entries of all workers that point at the backend (idle ones count until they expire), as
// of each worker's last publication (at most activeEvery old while traffic flows). Safe while
// the workers run.
func (d *Dataplane) ActiveFlows() map[string]map[uint32]uint64 {
	out := map[string]map[uint32]uint64{}
	for _, w := range d.workers {
		b := w.act.pub.Load()
		if b == nil {
			continue
		}
		for i := range b.snap.services {
			sv := &b.snap.services[i]
			m := out[sv.spec.Name]
			if m == nil {
				m = map[uint32]uint64{}
				out[sv.spec.Name] = m
			}
			for j := range b.n[i] {
				m[sv.spec.Sched.Backend(j).ID] += uint64(max(0, b.n[i][j].Load()))
			}
		}
	}
	return out
}
