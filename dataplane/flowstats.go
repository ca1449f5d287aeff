package dataplane

import (
	"net/netip"
	"sync/atomic"
)

// Per-service and per-backend counters. A worker counts in plain arrays laid out for the
// snapshot it runs (services by snapshot index, backends by their target's flow index: the
// service's base plus the backend's position), notes which entries a batch touched, and once
// per batch copies those entries into a published copy with one atomic store per word;
// Stats-side readers load the published copy. A new snapshot gets new arrays, with the
// counts carried over by service name and backend ID, so totals survive a snapshot change.
//
// A packet a backend took is counted on the backend only; the service's packets, bytes and
// new flows take the backend's increase since the last publish when the backend is
// published (fold), so the per-packet work is one entry, not two.

// Words of a service's and of a backend's counter entry.
const (
	sPackets = iota
	sBytes
	sNewFlows
	sNoBackend
	sOutPackets // NAT replies translated back to clients
	sOutBytes
	svcWords
)

const (
	bPackets = iota
	bBytes
	bNewFlows
	bActive // the worker's connection-table entries on the backend (a gauge, see refreshActive)
	bOutPackets
	bOutBytes
	beWords
)

// activeEvery is how often (ns) a worker republishes its per-backend active flows, which
// change on expiry as well as on new flows.
const activeEvery = int64(10e6)

// maxDirty bounds the touched entries a worker remembers between publishes; past it, the
// next publish copies every entry.
const maxDirty = 512

// flowCounts is one layout of the counters: for snapshot snap.
type flowCounts struct {
	snap  *Snapshot
	base  []int32           // per service: index of its first backend in be
	owner []int32           // per backend: its service's index
	svc   []uint64          // svcWords per service
	be    [][beWords]uint64 // per backend
}

func newFlowCounts(s *Snapshot) *flowCounts {
	fc := &flowCounts{snap: s, base: make([]int32, len(s.services))}
	n := 0
	for i := range s.services {
		fc.base[i] = int32(n)
		n += len(s.services[i].targets)
	}
	fc.owner = make([]int32, n)
	for i := range s.services {
		for j := range s.services[i].targets {
			fc.owner[int(fc.base[i])+j] = int32(i)
		}
	}
	fc.svc = make([]uint64, len(s.services)*svcWords)
	fc.be = make([][beWords]uint64, n)
	return fc
}

// carry copies the counts of old into fc, matching services by name and backends by their
// scheduler ID.
func (fc *flowCounts) carry(old *flowCounts) {
	if old == nil {
		return
	}
	byName := make(map[string]int, len(old.snap.services))
	for i := range old.snap.services {
		byName[old.snap.services[i].spec.Name] = i
	}
	for i := range fc.snap.services {
		sv := &fc.snap.services[i]
		oi, ok := byName[sv.spec.Name]
		if !ok {
			continue
		}
		copy(fc.svc[i*svcWords:(i+1)*svcWords], old.svc[oi*svcWords:(oi+1)*svcWords])
		osv := &old.snap.services[oi]
		for j := range sv.targets {
			op := osv.spec.Sched.Position(sv.spec.Sched.Backend(j).ID)
			if op < 0 || op >= len(osv.targets) {
				continue
			}
			fc.be[int(fc.base[i])+j] = old.be[int(old.base[oi])+op]
		}
	}
}

// flows is an engine's per-service and per-backend accounting.
type flows struct {
	work     *flowCounts                // the worker's plain counts, current snapshot
	pub      atomic.Pointer[flowCounts] // the published copy, read by Stats
	dirtySvc []int32                    // service indexes touched since the last publish
	dirtyBE  []int32                    // backend indexes touched since the last publish
	all      bool                       // too many touched: publish every entry
	// markSvc and markBE hold, per entry, the epoch in which it was last put on its dirty
	// list, so that each touched entry is listed (and published) once per epoch however its
	// packets interleave; publish starts a new epoch.
	markSvc, markBE []uint32
	epoch           uint32
}

// relayout switches to snapshot s: the touched entries of the old layout are published, new
// arrays get the old counts, and the new published copy replaces the old one. Allocates;
// runs once per snapshot, not per packet.
func (f *flows) relayout(s *Snapshot) {
	if f.dirtySvc == nil {
		f.dirtySvc = make([]int32, 0, maxDirty)
		f.dirtyBE = make([]int32, 0, maxDirty)
	}
	f.publish()
	w := newFlowCounts(s)
	w.carry(f.work)
	f.markSvc, f.markBE, f.epoch = make([]uint32, len(w.svc)/svcWords), make([]uint32, len(w.be)), 1
	p := &flowCounts{snap: s, base: w.base, owner: w.owner, svc: append([]uint64(nil), w.svc...), be: append([][beWords]uint64(nil), w.be...)}
	f.work = w
	f.pub.Store(p)
}

// count counts a packet of n bytes that the backend at flow index b (its target's flow)
// took; isNew tells whether it started a flow. The backend's service takes it at the next
// publish (fold). It reports whether the backend is not listed yet in this epoch: the
// caller then lists it (touchBE). Without that call count inlines into forward.
func (f *flows) count(b int32, n uint64, isNew bool) bool {
	w := f.work
	if i := int(b); w != nil && uint(i) < uint(len(w.be)) { // b < 0 too, as a large unsigned
		bc := &w.be[i]
		bc[bPackets]++
		bc[bBytes] += n
		if isNew {
			bc[bNewFlows]++
		}
		m := f.markBE
		return int(b) >= len(m) || m[b] != f.epoch
	}
	return false
}

// touchBE lists backend b as touched in this epoch (after count).
func (f *flows) touchBE(b int32) { f.touch(&f.dirtyBE, f.markBE, b) }

// noBackend counts a packet of n bytes to service si that no backend could take.
func (f *flows) noBackend(si int, n uint64) {
	w := f.work
	if w == nil || si >= len(w.base) {
		return
	}
	sc := w.svc[si*svcWords : si*svcWords+svcWords]
	sc[sPackets]++
	sc[sBytes] += n
	sc[sNoBackend]++
	f.touch(&f.dirtySvc, f.markSvc, int32(si))
}

// countOut counts a NAT reply of n bytes (as received) from backend bi of service si on its
// way back to the client: ipvsadm's OutPkts and OutBytes.
func (f *flows) countOut(si, bi int, n uint64) {
	w := f.work
	if w == nil || si >= len(w.base) {
		return
	}
	sc := w.svc[si*svcWords : si*svcWords+svcWords]
	sc[sOutPackets]++
	sc[sOutBytes] += n
	f.touch(&f.dirtySvc, f.markSvc, int32(si))
	b := int(w.base[si]) + bi
	if bi < 0 || b >= len(w.be) {
		return
	}
	bc := &w.be[b]
	bc[bOutPackets]++
	bc[bOutBytes] += n
	f.touch(&f.dirtyBE, f.markBE, int32(b))
}

func (f *flows) touch(d *[]int32, mark []uint32, i int32) {
	if int(i) < len(mark) {
		if mark[i] == f.epoch {
			return // listed already in this epoch
		}
		mark[i] = f.epoch
	}
	l := *d
	if len(l) == cap(l) {
		f.all = true
		return
	}
	*d = append(l, i)
}

// publish copies the touched entries into the published copy, one atomic store per word,
// after folding each touched backend's new packets, bytes and flows into its service.
func (f *flows) publish() {
	w, p := f.work, f.pub.Load()
	if w == nil || p == nil {
		return
	}
	if f.all {
		for b := range w.owner {
			fold(w, p, b)
		}
		publishWords(p.svc, w.svc)
		for b := range min(len(p.be), len(w.be)) {
			publishWords(p.be[b][:], w.be[b][:])
		}
	} else {
		for _, i := range f.dirtyBE {
			b := int(i)
			if b >= len(w.owner) {
				continue
			}
			fold(w, p, b)
			f.touch(&f.dirtySvc, f.markSvc, w.owner[b])
			if b < len(p.be) {
				publishWords(p.be[b][:], w.be[b][:])
			}
		}
		if f.all { // the services folded into overflowed their list
			publishWords(p.svc, w.svc)
		} else {
			for _, i := range f.dirtySvc {
				k := int(i) * svcWords
				publishWords(p.svc[k:k+svcWords], w.svc[k:k+svcWords])
			}
		}
	}
	f.all = false
	f.dirtySvc = f.dirtySvc[:0]
	f.dirtyBE = f.dirtyBE[:0]
	if f.epoch++; f.epoch == 0 { // wrapped (after 2^32 publishes): no mark may equal it
		clear(f.markSvc)
		clear(f.markBE)
		f.epoch = 1
	}
}

// fold adds to backend b's service the packets, bytes and new flows b counted since it was
// last published (p, the published copy, still holds the old values: only the worker
// writes it, so it reads it plainly).
func fold(w, p *flowCounts, b int) {
	s := int(w.owner[b]) * svcWords
	if b >= len(w.be) || b >= len(p.be) || s+svcWords > len(w.svc) {
		return
	}
	wb, pb := &w.be[b], &p.be[b]
	w.svc[s+sPackets] += wb[bPackets] - pb[bPackets]
	w.svc[s+sBytes] += wb[bBytes] - pb[bBytes]
	w.svc[s+sNewFlows] += wb[bNewFlows] - pb[bNewFlows]
}

// publishWords copies the words of src that differ from dst into dst, one atomic store
// each (an XCHG on amd64, which drains the store buffer: most words of a touched entry,
// such as its new flows, did not change).
func publishWords(dst, src []uint64) {
	for k := range min(len(dst), len(src)) {
		if atomic.LoadUint64(&dst[k]) != src[k] {
			atomic.StoreUint64(&dst[k], src[k])
		}
	}
}

// ServiceStats are the counters of one service, summed over the workers. Packets and bytes
// are those the service received (client to VIP, before any rewrite, dropped ones included);
// OutPackets and OutBytes are the NAT replies the data path translated back to clients (as
// received from the backends; direct routing and tunnelling replies bypass the LB, as in
// IPVS, so they stay 0 there).
type ServiceStats struct {
	Name       string
	Packets    uint64
	Bytes      uint64
	NewFlows   uint64 // packets that started a flow (a new connection-table entry)
	NoBackend  uint64 // packets dropped because no backend could take them
	OutPackets uint64
	OutBytes   uint64
	Backends   []BackendStats
}

// BackendStats are the counters of one backend of a service, summed over the workers:
// packets and bytes scheduled to it (as received), and the flows it was given.
type BackendStats struct {
	Name     string
	ID       uint32 // the scheduler's backend ID
	Addr     netip.Addr
	Packets  uint64
	Bytes    uint64
	NewFlows uint64
	// Active is the flows in the connection tables on the backend (published every 10 ms).
	Active uint64
	// OutPackets and OutBytes are the backend's NAT replies translated back to clients.
	OutPackets uint64
	OutBytes   uint64
}

// add adds the published counts p into out, which is laid out for snapshot s (matching by
// service name and backend ID).
func addFlowCounts(out []ServiceStats, s *Snapshot, p *flowCounts) {
	byName := make(map[string]int, len(p.snap.services))
	for i := range p.snap.services {
		byName[p.snap.services[i].spec.Name] = i
	}
	for i := range out {
		pi, ok := byName[out[i].Name]
		if !ok {
			continue
		}
		o := &out[i]
		k := pi * svcWords
		o.Packets += atomic.LoadUint64(&p.svc[k+sPackets])
		o.Bytes += atomic.LoadUint64(&p.svc[k+sBytes])
		o.NewFlows += atomic.LoadUint64(&p.svc[k+sNewFlows])
		o.NoBackend += atomic.LoadUint64(&p.svc[k+sNoBackend])
		o.OutPackets += atomic.LoadUint64(&p.svc[k+sOutPackets])
		o.OutBytes += atomic.LoadUint64(&p.svc[k+sOutBytes])
		psv := &p.snap.services[pi]
		for j := range o.Backends {
			pos := psv.spec.Sched.Position(s.services[i].spec.Sched.Backend(j).ID)
			if pos < 0 || pos >= len(psv.targets) {
				continue
			}
			bc := &p.be[int(p.base[pi])+pos]
			o.Backends[j].Packets += atomic.LoadUint64(&bc[bPackets])
			o.Backends[j].Bytes += atomic.LoadUint64(&bc[bBytes])
			o.Backends[j].NewFlows += atomic.LoadUint64(&bc[bNewFlows])
			o.Backends[j].Active += atomic.LoadUint64(&bc[bActive])
			o.Backends[j].OutPackets += atomic.LoadUint64(&bc[bOutPackets])
			o.Backends[j].OutBytes += atomic.LoadUint64(&bc[bOutBytes])
		}
	}
}

// refreshActive publishes the core's active flows of every backend of the current layout.
// Runs every activeEvery, not per packet; allocates nothing.
func (e *Engine) refreshActive(now int64) {
	if now-e.activeAt < activeEvery {
		return
	}
	e.activeAt = now
	w, p := e.fl.work, e.fl.pub.Load()
	if w == nil || p == nil || p.snap != w.snap {
		return
	}
	for i := range w.snap.services {
		sv := &w.snap.services[i]
		for j := range sv.targets {
			b := int(w.base[i]) + j
			n := uint64(e.core.ActiveFlows(sv.spec.Sched, j))
			w.be[b][bActive] = n
			atomic.StoreUint64(&p.be[b][bActive], n)
		}
	}
}

// emptyFlowStats lays out the services and backends of s with zero counts.
func emptyFlowStats(s *Snapshot) []ServiceStats {
	out := make([]ServiceStats, len(s.services))
	for i := range s.services {
		sv := &s.services[i]
		out[i] = ServiceStats{Name: sv.spec.Name, Backends: make([]BackendStats, len(sv.targets))}
		for j := range sv.targets {
			b := sv.spec.Sched.Backend(j)
			out[i].Backends[j] = BackendStats{Name: b.Name, ID: b.ID, Addr: sv.targets[j].ip}
		}
	}
	return out
}

// FlowStats returns the engine's per-service and per-backend counters laid out for its
// current snapshot (nil before it has seen one). Owner only, like Counters.
func (e *Engine) FlowStats() []ServiceStats {
	w := e.fl.work
	if w == nil {
		return nil
	}
	out := emptyFlowStats(w.snap)
	e.fl.publish()
	addFlowCounts(out, w.snap, e.fl.pub.Load())
	return out
}

// FlowStats returns the per-service and per-backend counters of every worker, summed and
// laid out for the published snapshot (services and backends it no longer has are left
// out; a worker still on an older snapshot adds what it counted there by service name and
// backend ID). As of each worker's last batch; safe while the workers run. Nil before the
// first Publish.
func (d *Dataplane) FlowStats() []ServiceStats {
	s := d.snap.Load()
	if s == nil {
		return nil
	}
	out := emptyFlowStats(s)
	for _, w := range d.workers {
		if p := w.engine.fl.pub.Load(); p != nil {
			addFlowCounts(out, s, p)
		}
	}
	return out
}
