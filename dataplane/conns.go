package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// Connection listings (xlb ctl conns, the ActiveConn/InActConn of xlb ctl list): each
// worker's connection table belongs to its worker, so a listing is a request every worker
// serves itself, walkChunk buckets at a time between its batches (and without sleeping
// while one is pending), copying what matches into the request. Forwarding never stops;
// each batch pays for at most one step (BenchmarkProcessWhileListing measures it).

// walkChunk is how many table buckets (8 entries each) a busy worker walks per step, after
// a batch: with 1M live entries in a 2M-entry table a listing spans 16384 batches, each
// paying 0.3-0.5 us per packet more (BenchmarkProcessWhileListing; docs/runtime.md). A
// worker whose last step had nothing to forward walks walkChunkIdle buckets per step.
const (
	walkChunk     = 16
	walkChunkIdle = 256
)

// ErrNoWorkers is returned by Conns when no worker runs.
var ErrNoWorkers = errors.New("no worker is running")

// ConnQuery selects the entries a listing reads.
type ConnQuery struct {
	// Service, when set, is the only service listed (ErrNoService if unknown).
	Service string
	// Client, when valid, keeps the entries whose client address is in it.
	Client netip.Prefix
	// Limit bounds the entries returned (0: none are returned, only counted).
	Limit int
}

// Conn is one connection-table entry.
type Conn struct {
	Worker    int            `json:"worker"`
	Service   string         `json:"service"`
	Proto     uint8          `json:"proto"`
	Client    netip.AddrPort `json:"client"`
	VIP       netip.AddrPort `json:"vip"`
	Backend   netip.AddrPort `json:"backend"`
	BackendID uint32         `json:"backend_id"`
	State     string         `json:"state"`
	Expires   time.Duration  `json:"expires"`
}

// ConnCount is what the tables hold for one backend: ActiveConn (established TCP) and
// InActConn (every other state, UDP included), as ipvsadm counts them.
type ConnCount struct {
	Active   uint64 `json:"active"`
	Inactive uint64 `json:"inactive"`
}

// ConnListing is the result of a listing.
type ConnListing struct {
	// Conns are the matching entries, at most ConnQuery.Limit, in table order per worker.
	Conns []Conn `json:"conns"`
	// Matched counts every matching entry, also those beyond the limit.
	Matched int `json:"matched"`
	// Counts are the matching entries per service name and backend ID.
	Counts map[string]map[uint32]ConnCount `json:"counts"`
	// Capacity is the entries all the workers' tables hold at most.
	Capacity int `json:"capacity"`
}

// connWalk is one worker's part of a listing. The worker owns it from the moment it is
// posted until it closes done.
type connWalk struct {
	svc    int // service index, -1: all
	client netip.Prefix
	limit  int
	now    int64
	at     int
	stop   atomic.Bool // the requester gave up
	fn     func(sched.Conn)
	out    []sched.Conn
	counts [][]ConnCount // by service index and backend ID, sized for the snapshot's
	done   chan struct{}
}

func (r *connWalk) visit(e sched.Conn) {
	if r.svc >= 0 && e.Service != r.svc {
		return
	}
	if r.client.IsValid() {
		var a netip.Addr
		if e.Key.V6 {
			a = netip.AddrFrom16(e.Key.Src)
		} else {
			a = netip.AddrFrom4([4]byte(e.Key.Src[:4]))
		}
		if !r.client.Contains(a) {
			return
		}
	}
	if e.Service >= len(r.counts) || int(e.Backend) >= len(r.counts[e.Service]) {
		return // a service or backend the snapshot does not have
	}
	if c := &r.counts[e.Service][e.Backend]; e.State.Active() {
		c.Active++
	} else {
		c.Inactive++
	}
	if len(r.out) < r.limit {
		r.out = append(r.out, e)
	}
}

// serveWalk does one step of a pending listing, chunk buckets, and reports whether one is
// pending. Owner only: called by the worker's loop.
func (w *worker) serveWalk(chunk int) bool {
	r := w.walk.Load()
	if r == nil {
		return false
	}
	core := w.engine.core
	if !r.stop.Load() {
		r.at = core.Walk(r.at, chunk, int64(time.Since(w.start)), r.fn)
	}
	if r.stop.Load() || r.at >= core.Buckets() {
		w.walk.Store(nil)
		close(r.done)
	}
	return true
}

// Conns lists the entries of every running worker's connection table that q selects, and
// counts them per backend. It reads the tables while the workers forward (see walkChunk);
// one listing runs at a time. Entries of services or backends the current snapshot no
// longer has are left out.
func (d *Dataplane) Conns(ctx context.Context, q ConnQuery) (ConnListing, error) {
	if err := ctx.Err(); err != nil {
		return ConnListing{}, fmt.Errorf("list connections: %w", err)
	}
	d.listMu.Lock()
	defer d.listMu.Unlock()
	snap := d.snap.Load()
	svc := -1
	if q.Service != "" {
		s := snap.serviceByName(q.Service)
		if s == nil {
			return ConnListing{}, fmt.Errorf("service %q: %w", q.Service, ErrNoService)
		}
		svc = s.Sched.Index()
	}
	var walks []*connWalk
	var ids []int
	out := ConnListing{Counts: map[string]map[uint32]ConnCount{}}
	for _, w := range d.workers {
		if !w.running.Load() {
			continue
		}
		limit := min(max(q.Limit, 0), w.engine.core.Capacity())
		// Everything the worker writes is allocated here: the worker does not allocate.
		r := &connWalk{svc: svc, client: q.Client, limit: limit, counts: snap.countSlots(),
			out: make([]sched.Conn, 0, limit), done: make(chan struct{})}
		r.fn = r.visit
		if !w.walk.CompareAndSwap(nil, r) {
			return out, fmt.Errorf("worker %d: a listing is still pending", w.id)
		}
		walks = append(walks, r)
		ids = append(ids, w.id)
		out.Capacity += w.engine.core.Capacity()
	}
	if len(walks) == 0 {
		return out, ErrNoWorkers
	}
	for _, r := range walks {
		select {
		case <-r.done:
		case <-ctx.Done():
			// The workers give the walk up at their next turn (a worker with a walk
			// pending does not sleep); wait for that, so the next listing finds them free.
			for _, r := range walks {
				r.stop.Store(true)
			}
			for _, r := range walks {
				select {
				case <-r.done:
				case <-time.After(time.Second):
				}
			}
			return ConnListing{}, fmt.Errorf("list connections: %w", ctx.Err())
		}
	}
	for i, r := range walks {
		snap.resolveConns(&out, ids[i], r, q.Limit)
	}
	return out, nil
}

// serviceByName returns the spec of the service named name, or nil.
func (s *Snapshot) serviceByName(name string) *ServiceSpec {
	if s == nil {
		return nil
	}
	for i := range s.services {
		if s.services[i].spec.Name == name {
			return &s.services[i].spec
		}
	}
	return nil
}

// countSlots returns a listing's counters: per service index, one per backend ID up to the
// highest of the service's.
func (s *Snapshot) countSlots() [][]ConnCount {
	if s == nil {
		return nil
	}
	var out [][]ConnCount
	for i := range s.services {
		sv := s.services[i].spec.Sched
		if sv == nil {
			continue
		}
		var top uint32
		for j := range sv.Len() {
			top = max(top, sv.Backend(j).ID)
		}
		if sv.Index() >= len(out) {
			out = append(out, make([][]ConnCount, sv.Index()+1-len(out))...)
		}
		out[sv.Index()] = make([]ConnCount, top+1)
	}
	return out
}

// resolveConns adds worker id's walk r to out, naming services and backends after snapshot
// s (entries it does not know are left out).
func (s *Snapshot) resolveConns(out *ConnListing, id int, r *connWalk, limit int) {
	if s == nil {
		return
	}
	byIndex := map[int]*ServiceSpec{}
	for i := range s.services {
		sp := &s.services[i].spec
		byIndex[sp.Sched.Index()] = sp
	}
	for idx, byID := range r.counts {
		sp := byIndex[idx]
		for id, c := range byID {
			if sp == nil || c == (ConnCount{}) || sp.Sched.Position(uint32(id)) < 0 {
				continue
			}
			m := out.Counts[sp.Name]
			if m == nil {
				m = map[uint32]ConnCount{}
				out.Counts[sp.Name] = m
			}
			t := m[uint32(id)]
			t.Active += c.Active
			t.Inactive += c.Inactive
			m[uint32(id)] = t
			out.Matched += int(c.Active + c.Inactive)
		}
	}
	for _, e := range r.out {
		sp := byIndex[e.Service]
		if sp == nil || len(out.Conns) >= limit {
			continue
		}
		p := sp.Sched.Position(e.Backend)
		if p < 0 {
			continue
		}
		out.Conns = append(out.Conns, connOf(id, sp, p, e))
	}
}

func connOf(worker int, sp *ServiceSpec, p int, e sched.Conn) Conn {
	src, dst := netip.AddrFrom16(e.Key.Src), netip.AddrFrom16(e.Key.Dst)
	if !e.Key.V6 {
		src, dst = netip.AddrFrom4([4]byte(e.Key.Src[:4])), netip.AddrFrom4([4]byte(e.Key.Dst[:4]))
	}
	t := sp.Targets[p]
	port := e.Key.DstPort
	if t.Port != 0 {
		port = t.Port
	}
	return Conn{Worker: worker, Service: sp.Name, Proto: e.Key.Proto, Client: netip.AddrPortFrom(src, e.Key.SrcPort),
		VIP: netip.AddrPortFrom(dst, e.Key.DstPort), Backend: netip.AddrPortFrom(t.Addr, port),
		BackendID: e.Backend, State: e.State.String(), Expires: e.Expires}
}
