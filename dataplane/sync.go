package dataplane

import (
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/sched"
)

// engineSync is an engine's connection sync (package connsync): the queue its records go
// to, and the table of the peers' connections it asks on a miss.
type engineSync struct {
	out *connsync.Ring
	in  *connsync.Table
	cur *service // the service of the packet being scheduled, for fromPeer
	rec connsync.Record
}

// SetSync connects the engine to connection sync: the connection-table changes peers
// should hear about go to out (nil: send nothing), and a packet of a flow the table does
// not hold (other than a TCP SYN) goes to the backend in's entry names, when that backend
// is in the service and up (nil: ask nobody). A flow is sent again every refresh while it
// lives. Owner only, before the engine runs.
func (e *Engine) SetSync(out *connsync.Ring, in *connsync.Table, refresh time.Duration) {
	e.sync.out, e.sync.in = out, in
	var miss func(*sched.Service, sched.Key) int
	if in != nil {
		miss = e.fromPeer
	}
	e.core.SetSync(miss, out != nil, refresh)
}

// fromPeer returns the position in the current service of the backend a peer had for flow
// k, or -1. Called by the core on a miss (a new flow on this host).
func (e *Engine) fromPeer(_ *sched.Service, k sched.Key) int {
	r, sv := &e.sync.rec, e.sync.cur
	if sv == nil || !e.sync.in.Lookup(&k, r) {
		return -1
	}
	for i := range sv.targets {
		t := &sv.targets[i]
		if t.addr == r.Backend && t.port == r.BackendPort && t.v6 == r.BackendV6 {
			return i
		}
	}
	return -1
}

// pushSync queues the change the core noted for flow k, now on target t, if any.
func (e *Engine) pushSync(k *sched.Key, t *target) {
	st, ok := e.core.SyncChange()
	if !ok {
		return
	}
	r := &e.sync.rec
	r.Key, r.State = *k, st
	r.Backend, r.BackendPort, r.BackendV6 = t.addr, t.port, t.v6
	e.sync.out.Push(r)
}
