package dataplane

import (
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/sched"
)

// engineSync is an engine's connection sync (package connsync): the queue its records go
// to, and the table of the peers' connections it asks on a miss.
type engineSync struct {
	out  *connsync.Ring
	in   *connsync.Table
	cur  *service // the service of the packet being scheduled, for fromPeer
	rec  connsync.Record
	gone connsync.Record // a removal's record (written while rec may be in use)
}

// SetSync connects the engine to connection sync: the connection-table changes peers
// should hear about go to out (nil: send nothing), and a packet of a flow the table does
// not hold (other than a TCP SYN) goes to the backend in's entry names, when that backend
// is in the service and up (nil: ask nobody). A flow is sent again every refresh while it
// lives. Entries the table drops while the peers' copy would outlive them are sent as
// removals (sched.Core.SetSyncRemovals). With templates set, the persistence templates of
// persistent services are sent too; a client new to this host then takes the backend a
// peer's template in in names (sched.Core.SetSyncTemplates). Owner only, before the engine
// runs.
func (e *Engine) SetSync(out *connsync.Ring, in *connsync.Table, refresh time.Duration, templates bool) {
	e.sync.out, e.sync.in = out, in
	var miss, tpl func(*sched.Service, sched.Key) int
	if in != nil {
		miss, tpl = e.fromPeer, e.templateFromPeer
	}
	e.core.SetSync(miss, out != nil, refresh)
	e.core.SetSyncTemplates(tpl, out != nil && templates)
	if out != nil {
		e.core.SetSyncRemovals(e.pushGone)
	}
}

// fromPeer returns the position in the current service of the backend a peer had for flow
// k, or -1. Called by the core on a miss (a new flow on this host).
func (e *Engine) fromPeer(_ *sched.Service, k sched.Key) int {
	r, sv := &e.sync.rec, e.sync.cur
	if sv == nil || !e.sync.in.Lookup(&k, r) {
		return -1
	}
	return sv.targetOf(r)
}

// templateFromPeer returns the position in the current service of the backend a peer's
// persistence template names for flow k's client, or -1. Called by the core for a new
// client of a persistent service.
func (e *Engine) templateFromPeer(svc *sched.Service, k sched.Key) int {
	r, sv := &e.sync.rec, e.sync.cur
	if sv == nil || k.V6 != sv.v6 {
		return -1
	}
	tk := sv.templateKey(svc.Persistence(), &k)
	if !e.sync.in.LookupTemplate(&tk, svc.Persistence().Timeout, r) {
		return -1
	}
	return sv.targetOf(r)
}

// targetOf returns the position of r's backend among sv's targets, or -1.
func (sv *service) targetOf(r *connsync.Record) int {
	for i := range sv.targets {
		t := &sv.targets[i]
		if t.addr == r.Backend && t.port == r.BackendPort && t.v6 == r.BackendV6 {
			return i
		}
	}
	return -1
}

// templateKey is the key of a persistence template of sv for the client of flow k: the
// client's address masked to the persistence prefix, port 0, and the service's (first)
// VIP, port and protocol, the same on every host with the same configuration.
func (sv *service) templateKey(p sched.Persistence, k *sched.Key) sched.Key {
	return sched.Key{Src: p.ClientPrefix(k), Dst: sv.vip, DstPort: sv.spec.Port, Proto: sv.spec.Proto, V6: k.V6}
}

// pushSync queues the changes the core noted for flow k, now on target t of the current
// service, if any.
func (e *Engine) pushSync(k *sched.Key, t *target) {
	if st, ok := e.core.SyncChange(); ok {
		r := &e.sync.rec
		r.Kind, r.Key, r.State = connsync.KindConn, *k, st
		r.Backend, r.BackendPort, r.BackendV6 = t.addr, t.port, t.v6
		e.sync.out.Push(r)
	}
	if e.core.SyncTemplate() {
		sv := e.sync.cur
		if sv == nil || k.V6 != sv.v6 {
			return
		}
		r := &e.sync.rec
		r.Kind, r.Key, r.State = connsync.KindTemplate, sv.templateKey(sv.spec.Sched.Persistence(), k), 0
		r.Backend, r.BackendPort, r.BackendV6 = t.addr, t.port, t.v6
		e.sync.out.Push(r)
	}
}

// pushGone queues a removal of flow k (last state st). Called by the core during a
// Schedule.
func (e *Engine) pushGone(k *sched.Key, st sched.ConnState) {
	r := &e.sync.gone
	r.Kind, r.Key, r.State = connsync.KindRemove, *k, st
	e.sync.out.Push(r)
}
