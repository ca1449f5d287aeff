package sched

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/xlb-dev/xlb/sched/internal/prefetch"
)

// DefaultCapacity is the connection-table capacity per core when CoreConfig leaves it 0:
// 1M entries, 56 MiB.
const DefaultCapacity = 1 << 20

// MaxCapacity is the largest CoreConfig.Capacity NewCore accepts (7 GiB of table).
const MaxCapacity = 1 << 27

// defaultSweep is how many buckets Maintain examines per call when CoreConfig leaves it 0.
const defaultSweep = 8

// ErrBadCore is returned by NewCore for an invalid CoreConfig.
var ErrBadCore = errors.New("invalid core config")

// CoreConfig configures one worker's Core.
type CoreConfig struct {
	// ID is the worker's number. Cores with different IDs start round-robin at different
	// backends and draw different random sequences.
	ID int
	// Capacity is the number of connection-table entries, fixed for the core's life
	// (rounded up to a multiple of 8); 0 means DefaultCapacity. Memory is
	// BytesPerEntry * Capacity, mapped by NewCore outside Go's heap (on huge pages where
	// the kernel has them) and unmapped when the Core is garbage collected.
	Capacity int
	// Timeouts are the idle timeouts; zero fields take DefaultTimeouts' values.
	Timeouts Timeouts
	// Seed perturbs the per-core random generator (with ID); 0 is a fine value.
	Seed uint64
	// SweepBuckets is how many table buckets (8 entries each) one Maintain call examines
	// for idle entries; 0 means 8 (a 1M-entry table is swept once per 16384 calls; lookups
	// and inserts also expire the idle entries they meet).
	SweepBuckets int
	// Persist is the persistence table shared by the cores of a process (see
	// PersistTable); nil gives the core a table of its own (DefaultPersistSize) when it
	// first meets a persistent service, which holds persistence on that core only.
	Persist *PersistTable
}

// Stats are a core's connection-table counters.
type Stats struct {
	Entries     uint64 // live entries (idle ones count until a lookup or Maintain expires them)
	Capacity    uint64
	Hits        uint64 // packets of a known flow sent to its backend
	Misses      uint64 // packets of an unknown (or idle-expired) flow
	Inserts     uint64 // new entries
	Evictions   uint64 // live entries dropped for a new flow because their bucket was full
	Expirations uint64 // idle entries removed (by a lookup, an insert or Maintain)
	Rescheduled uint64 // known flows moved because their backend was down or removed
	NoBackend   uint64 // packets for which no backend could take the flow
	// OverQuota counts new flows of a service at its TableShare that found none of the
	// service's own entries to replace in their buckets: forwarded, not recorded.
	OverQuota uint64
	// Persisted counts new flows sent to the backend their client prefix was remembered
	// on (persistent services).
	Persisted uint64
	// OnePacket counts packets of one-packet services (scheduled without an entry).
	OnePacket uint64
}

const numCounters = 12

// svcState is a core's state for one service: strategy state laid out for snapshot svc.
type svcState struct {
	svc   *Service
	rr    uint32
	conns []int32 // this core's live entries per backend position
	live  int64   // sum of conns: the service's entries in this core's table
	quota int64   // most entries the service may hold here (0: no quota)
	cur   []int64 // smooth weighted round-robin current weights per position

	spare    []int32 // the previous layout's arrays, reused by the next Prepare
	spareCur []int64
}

// Core is one worker's scheduler: the connection table and the per-service strategy state.
// It is not safe for concurrent use: one goroutine (the worker) calls Schedule, Prepare and
// Maintain; any goroutine may call Stats.
type Core struct {
	t          table
	secret     tableSecret // keys the table hash (Hash)
	timeout    [8]uint32   // by state (numStates of them; 8 so that st&7 needs no bounds check)
	minTimeout uint32      // the smallest of timeout
	relocMax   uint64      // victim relocates only below this many entries (15/16 full)
	svcs       []svcState
	// quick is the last service ScheduleFlow found prepared, without persistence and not
	// one-packet: its next packets skip those checks. Prepare clears it when it lays a
	// service's state out anew (a Service never changes after NewService).
	quick   *Service
	rng     uint64
	rrStart uint32
	sweep   int
	sweepAt int
	persist *PersistTable
	c       [numCounters]uint64        // owner's counters, plain
	pub     [numCounters]atomic.Uint64 // published by Maintain for Stats

	sy coreSync // connection sync (sync.go)
}

// counter indexes into Core.c, in Stats order.
const (
	cEntries = iota
	cCapacity
	cHits
	cMisses
	cInserts
	cEvictions
	cExpirations
	cRescheduled
	cNoBackend
	cOverQuota
	cPersisted
	cOnePacket
)

// NewCore allocates a core's connection table (all of its memory) and strategy state.
func NewCore(cfg CoreConfig) (*Core, error) {
	if cfg.Capacity < 0 || cfg.SweepBuckets < 0 || cfg.ID < 0 {
		return nil, fmt.Errorf("%w: negative capacity, sweep or id", ErrBadCore)
	}
	if cfg.Capacity > MaxCapacity {
		return nil, fmt.Errorf("%w: capacity %d above %d", ErrBadCore, cfg.Capacity, MaxCapacity)
	}
	capacity := cfg.Capacity
	if capacity == 0 {
		capacity = DefaultCapacity
	}
	t, free := newTable(capacity)
	c := &Core{
		t:        t,
		relocMax: uint64(len(t.b)) * ways * 15 / 16,
		secret:   newTableSecret(),
		rng:      splitmix(cfg.Seed ^ uint64(cfg.ID+1)*0x9e3779b97f4a7c15),
		rrStart:  uint32(cfg.ID),
		sweep:    cfg.SweepBuckets,
		persist:  cfg.Persist,
	}
	if c.sweep == 0 {
		c.sweep = defaultSweep
	}
	tt := cfg.Timeouts.table()
	copy(c.timeout[:], tt[:])
	c.minTimeout = slices.Min(c.timeout[:numStates])
	c.c[cCapacity] = uint64(len(c.t.b) * ways)
	c.publish()
	if free != nil {
		// The table lives outside Go's heap: unmap it when the core is garbage.
		runtime.AddCleanup(c, func(free func() error) { _ = free() }, free)
	}
	return c, nil
}

// Capacity returns the number of connection-table entries.
func (c *Core) Capacity() int { return len(c.t.b) * ways }

// Len returns the number of live entries. Owner only.
func (c *Core) Len() int { return int(c.c[cEntries]) }

// Inserts returns the number of new flows the core has recorded so far, up to date after
// every Schedule (Stats.Inserts is as of the last Maintain). Owner only. ScheduleFlow says
// whether a packet started a flow without comparing it around the call.
func (c *Core) Inserts() uint64 { return c.c[cInserts] }

// NewFlows is Inserts plus the packets of one-packet services (each one a new flow that
// is not recorded). Owner only, up to date after every Schedule.
func (c *Core) NewFlows() uint64 { return c.c[cInserts] + c.c[cOnePacket] }

// Prepare lays out the core's state for snapshot svc: it grows the per-service slice and
// carries the per-backend flow counts and weighted round-robin state over from the
// service's previous snapshot (by backend ID).
// Schedule does this itself on the first packet after a change; a worker that calls Prepare
// for each service when it loads a new snapshot keeps that (allocating) work off the packet
// path.
func (c *Core) Prepare(svc *Service) {
	if svc == nil {
		return
	}
	if svc.index >= len(c.svcs) {
		grown := make([]svcState, svc.index+1, max(svc.index+1, 2*len(c.svcs)))
		copy(grown, c.svcs)
		c.svcs = grown
	}
	if svc.pticks > 0 && c.persist == nil {
		c.persist, _ = NewPersistTable(0) // size 0 cannot fail
	}
	st := &c.svcs[svc.index]
	if st.svc == svc {
		return
	}
	c.quick = nil
	n := len(svc.backends)
	conns, cur := grow(st.spare, n), grow(st.spareCur, n)
	for i := range conns {
		conns[i], cur[i] = 0, 0
		if st.svc != nil {
			if old := st.svc.ids.lookup(svc.backends[i].ID); old >= 0 {
				conns[i], cur[i] = st.conns[old], st.cur[old]
			}
		}
	}
	st.spare, st.conns = st.conns, conns
	st.spareCur, st.cur = st.cur, cur
	st.live = 0
	for _, n := range conns {
		st.live += int64(n)
	}
	st.quota = 0
	if svc.share > 0 && svc.share < 100 {
		st.quota = max(int64(c.Capacity())*int64(svc.share)/100, 1)
	}
	if st.svc == nil {
		st.rr = c.rrStart
	}
	st.svc = svc
}

// Schedule returns the position (in svc) of the backend for the packet with key k, or -1
// when no backend can take it. tcpFlags is the TCP header's flags byte (0 when not TCP) and
// now a clock reading in nanoseconds (any clock that does not go backwards, e.g.
// time.Now().UnixNano()), read once per batch.
//
// A packet of a known flow goes to the flow's backend while that backend is in svc and up,
// even when its weight is 0 (drained); otherwise the flow is rescheduled by the service's
// strategy. A new flow is scheduled and recorded; when its buckets are full (a flow has two
// candidate buckets of 8 entries), an idle-expired entry or else the least recently seen of
// the 16 makes room. A new flow of a persistent service goes to its client prefix's
// remembered backend while that one is up (see Persistence and PersistTable); a packet of a
// one-packet service is scheduled as a new flow and not recorded. It does not allocate once
// Prepare (or an earlier Schedule) has seen svc.
func (c *Core) Schedule(svc *Service, k *Key, tcpFlags uint8, now int64) int {
	return c.ScheduleHashed(svc, k, c.Hash(k), tcpFlags, now)
}

// Hash returns the connection-table hash of k: keyed with a secret the core drew at random
// when it was made, so it differs between cores and processes, and nobody outside can tell
// which buckets a tuple lands in. It is not the flow hash that picks a backend (that is
// Service.FlowHash, the same on every host). About 4 ns; it does not allocate.
func (c *Core) Hash(k *Key) uint64 { return c.secret.hash(k) }

// PrefetchBatch writes c.Hash(&keys[i]) to hs[i] for a batch of keys and asks for their
// connection-table lines (the first-choice bucket header, then the entry the tag points at)
// to be brought into the cache, in passes over the whole batch so that the cache misses
// overlap (see Prefetch). On a table much larger than the CPU cache those misses are most
// of Schedule's cost; a worker that calls PrefetchBatch for a batch and then ScheduleHashed
// per packet saves most of them (see docs/bench/engine.md). It changes nothing in the table
// and does not allocate. Only min(len(keys), len(hs)) keys are done.
func (c *Core) PrefetchBatch(keys []Key, hs []uint64) {
	n := min(len(keys), len(hs))
	keys, hs = keys[:n], hs[:n]
	for i := range keys {
		hs[i] = c.secret.hash(&keys[i])
	}
	c.Prefetch(hs)
}

// Prefetch is PrefetchBatch for a caller that has the table hashes (c.Hash) already: it
// asks for the table lines of hs, every first-choice bucket header of the batch first, then
// the entries whose tags match (or, for a bucket that has overflowed and does not hold the
// flow, the second bucket's header). The requests do not wait for their lines (on amd64,
// PREFETCHT0), so a batch's misses overlap each other and the work that follows. With at
// most 4096 live entries it asks for nothing: those lines stay in the cache anyway. The
// entry requests read the headers, so they wait for the header misses; a worker with work
// to do between the two steps does better calling PrefetchHeaders and PrefetchEntries
// apart (see PrefetchHeaders).
func (c *Core) Prefetch(hs []uint64) {
	c.PrefetchHeaders(hs)
	c.PrefetchEntries(hs)
}

// prefetchMin is the number of live entries up to which Prefetch asks for nothing: their
// lines (a header and an entry each: 512 KiB for 4096) stay in a core's L2 cache between
// batches (1-2 MiB on current server cores), and the passes would cost more than they
// save. BenchmarkProcess dr, never / always prefetching: 52.7 / 57.7 ns per packet at 1k
// flows, 58.1 / 60.2 at 4k, 65.2 / 65.5 at 16k (2 MiB of lines, this machine's L2), 84.4
// / 71.0 at 64k.
const prefetchMin = 4096

// prefetchChunk is how many hashes prefetchChunks takes at a time (a worker's batch).
const prefetchChunk = 64

// PrefetchHeaders is the first step of Prefetch on its own: it asks for the first-choice
// bucket headers of hs. A worker that spreads a batch's prefetch over its work calls it for
// every few packets it hashes, and PrefetchEntries for the same hashes a few packets before
// it schedules them, so that the misses overlap its work on the packets in between, not
// only each other (dataplane's batch asks for 8 at a time, 8 packets ahead; see
// docs/bench/engine.md). It reads nothing of the table, changes nothing and does not
// allocate.
func (c *Core) PrefetchHeaders(hs []uint64) { c.prefetchChunks(hs, false) }

// PrefetchEntries is the second step of Prefetch on its own: it reads the first-choice
// headers of hs (asked for by PrefetchHeaders, some time before) and asks for the entries
// whose tags match, or for the second bucket's header of a flow whose first bucket has
// overflowed and does not hold it. It changes nothing and does not allocate.
func (c *Core) PrefetchEntries(hs []uint64) { c.prefetchChunks(hs, true) }

// prefetchChunks does PrefetchEntries (entries) or PrefetchHeaders for hs, prefetchChunk
// hashes at a time; nothing with at most prefetchMin live entries (see Prefetch).
func (c *Core) prefetchChunks(hs []uint64, entries bool) {
	if c.c[cEntries] <= prefetchMin {
		return // the few lines the live flows use stay in the cache: nothing to overlap
	}
	for len(hs) > 0 {
		n := min(len(hs), prefetchChunk)
		if entries {
			c.prefetchEntries(hs[:n])
		} else {
			c.prefetchHeaders(hs[:n])
		}
		hs = hs[n:]
	}
	runtime.KeepAlive(c) // see newTable
}

// prefetchHeaders asks for the first-choice headers of at most prefetchChunk hashes.
func (c *Core) prefetchHeaders(hs []uint64) {
	var lines [prefetchChunk]unsafe.Pointer
	p := lines[:0]
	for _, h := range hs {
		b, _ := c.t.first(h)
		p = append(p, unsafe.Pointer(b))
	}
	prefetch.Lines(p)
}

// prefetchEntries asks for the entries of at most prefetchChunk hashes (PrefetchEntries).
func (c *Core) prefetchEntries(hs []uint64) {
	var lines [2 * prefetchChunk]unsafe.Pointer
	p := lines[:0]
	for _, h := range hs {
		b1, tag := c.t.first(h)
		w := firstWay(b1.match(tag))
		if w < 0 {
			if b1.over != 0 {
				p = append(p, unsafe.Pointer(c.t.second(h)))
			}
			continue
		}
		// The entry's first and last bytes: an entry may straddle two lines.
		e := unsafe.Pointer(&b1.ent[w&(ways-1)])
		p = append(p, e, unsafe.Add(e, unsafe.Sizeof(entry{})-1))
	}
	prefetch.Lines(p)
}

// prefetchSweep asks for the headers the next Maintain sweeps, so that they come in while
// the next batch runs instead of stalling that Maintain (on a table far larger than the
// cache, one cold line per bucket swept). At most maxSweepPrefetch of them.
func (c *Core) prefetchSweep() {
	if c.c[cEntries] <= prefetchMin {
		return
	}
	var lines [maxSweepPrefetch]unsafe.Pointer
	p := lines[:0]
	for i, at := 0, c.sweepAt; i < min(c.sweep, maxSweepPrefetch); i++ {
		p = append(p, unsafe.Pointer(&c.t.b[at]))
		if at++; at == len(c.t.b) {
			at = 0
		}
	}
	prefetch.Lines(p)
	runtime.KeepAlive(c) // see newTable
}

// maxSweepPrefetch bounds the sweep headers one prefetch asks for.
const maxSweepPrefetch = 16

// ScheduleHashed is Schedule for a packet whose table hash h = c.Hash(k) the caller already
// has (from PrefetchBatch). A wrong h makes a known flow look new.
func (c *Core) ScheduleHashed(svc *Service, k *Key, h uint64, tcpFlags uint8, now int64) int {
	p, _ := c.ScheduleFlow(svc, k, h, tcpFlags, now)
	return p
}

// ScheduleFlow is ScheduleHashed that also reports whether the packet started a flow (one
// NewFlows counts: a new entry, or a packet of a one-packet service), which a caller that
// counts new flows per backend would otherwise read from NewFlows before and after.
func (c *Core) ScheduleFlow(svc *Service, k *Key, h uint64, tcpFlags uint8, now int64) (backend int, isNew bool) {
	// The common case first, in few instructions: a live flow of a service without
	// persistence (nor a one-packet one), in its first bucket, on the backend it was
	// given, which still stands where the entry's hint says and is up. Everything else
	// takes schedule, which does not look the first bucket up again.
	w1 := -2 // the flow's way in its first bucket (-1: not there; -2: not looked up)
	if svc != c.quick && svc != nil && svc.index < len(c.svcs) && c.svcs[svc.index].svc == svc && svc.pticks == 0 && !svc.onePkt {
		c.quick = svc // the batch's next packets are mostly this service's
	}
	if svc == c.quick && svc != nil {
		// The first way whose tag matches, looked at here (find is a call, and a call
		// makes this function keep its arguments on the stack); a second match (a tag
		// collision, one lookup in thousands) leaves it to schedule's find. Ways 4-7 are
		// matched only when none of ways 0-3 is: firstWay(b.match(tag)), without the
		// second word's work for the flows found in the first.
		b, tag := c.t.first(h)
		w, lanes := -1, uint64(tag)*laneOnes
		if m := zeroLanes(b.tags[0] ^ lanes); m != 0 {
			w = way(0, m)
		} else if m := zeroLanes(b.tags[1] ^ lanes); m != 0 {
			w = way(1, m)
		}
		if w < 0 {
			w1 = -1 // no tag matches: not in the first bucket
		}
		if w >= 0 && b.ent[w].key.equal(k) {
			w1 = w
			t, st, e := tick(now), b.state[w]&7, &b.ent[w]
			next := stateStep[st][tcpFlags&7|tcpFlags>>1&8] // nextState, and reused in stepReused
			if p := int(e.pos); next&stepReused == 0 && t-b.seen[w] <= c.timeout[st] && int(e.svc) == svc.index &&
				p < len(svc.backends) && svc.backends[p].ID == e.backend && svc.backends[p].Up {
				b.seen[w] = t
				b.state[w] = next
				if c.sy.track {
					c.noteSync(e, b.state[w], b.state[w] != st, t)
				}
				c.c[cHits]++
				runtime.KeepAlive(c) // see newTable
				return p, false
			}
		}
	}
	return c.schedule(svc, k, h, w1, tcpFlags, now)
}

// schedule is ScheduleFlow's general case; w1 is the flow's way in its first bucket when
// the caller has looked it up (-1: not there), else -2. isNew is ScheduleFlow's. (Passing
// the first bucket too saved a new flow 2 instructions and cost every hit 12.)
func (c *Core) schedule(svc *Service, k *Key, h uint64, w1 int, tcpFlags uint8, now int64) (backend int, isNew bool) {
	if svc == nil {
		c.c[cNoBackend]++
		return -1, false
	}
	if svc.index >= len(c.svcs) || c.svcs[svc.index].svc != svc {
		c.Prepare(svc)
	}
	if svc.onePkt {
		return c.onePacket(svc, k, now), true
	}
	t := tick(now)
	b1, tag := c.t.first(h)
	if w1 == -2 {
		w1 = b1.find(tag, k)
	}
	var b2 *bucket // the flow's second bucket, once known
	b, w := b1, w1
	if w < 0 && b1.over != 0 {
		// The second bucket's tags first, here (find is too large to inline): a new
		// flow, whose tag matches none of them but one time in thousands, pays no call
		// and no reloads after one. A match, as rare, is matched again by find.
		b2 = c.t.second(h)
		if m0, m1 := b2.match(tag); m0|m1 != 0 {
			b, w = b2, b2.find(tag, k)
		}
	}
	if w >= 0 && reused(b.state[w], tcpFlags) {
		c.gone(b, w, true)
		c.expire(b, w) // a new connection on the tuple of a closed one: scheduled afresh
		w = -1
	}
	if w >= 0 {
		e := &b.ent[w]
		if t-b.seen[w] <= c.timeout[b.state[w]] {
			if int(e.svc) == svc.index {
				if p := c.position(svc, e); p >= 0 && svc.backends[p].Up {
					if svc.pticks > 0 && t>>persistTickShift != b.seen[w]>>persistTickShift {
						c.remember(svc, c.persist.persistKey(svc, k), e.backend, persistNow(now), true)
					}
					b.seen[w] = t
					old := b.state[w]
					b.state[w] = nextState(old, tcpFlags)
					if c.sy.track {
						c.noteSync(e, b.state[w], b.state[w] != old, t)
					}
					c.c[cHits]++
					runtime.KeepAlive(c) // see newTable
					return int(p), false
				}
			}
			return c.reschedule(svc, b, w, k, tcpFlags, now), false
		}
		c.expire(b, w) // idle too long: a new flow that reuses the tuple
	}
	c.c[cMisses]++
	st := &c.svcs[svc.index]
	p := -1
	if c.sy.miss != nil { // connection sync's lookup of a flow this core does not know
		p = c.fromPeer(svc, k, tcpFlags)
	}
	if p >= 0 && svc.pticks > 0 {
		// A synced connection of a persistent service carries its client's persistence:
		// the client's new connections follow it here too (see SetSync).
		c.remember(svc, c.persist.persistKey(svc, k), svc.backends[p].ID, persistNow(now), false)
	}
	switch {
	case p >= 0:
	case svc.pticks == 0:
		p = c.pick(st, svc, k) // choose's first case, without its call
	default:
		p = c.choose(st, svc, k, now)
	}
	if p < 0 {
		c.c[cNoBackend]++
		return -1, false
	}
	if b2 == nil {
		b2 = c.t.second(h)
	}
	if st.quota > 0 && st.live >= st.quota {
		b, w = c.ownVictim(b1, b2, svc.index, t)
		if w < 0 {
			c.c[cOverQuota]++
			return p, false // forwarded by the strategy's pick, not remembered
		}
	} else {
		b, w = c.victim(b1, b2, t)
	}
	if b != b1 {
		b.alt |= 1 << w
		b1.over++
	}
	b.setTag(w, tag)
	b.seen[w] = t
	b.state[w] = newState(k.Proto, tcpFlags)
	// Field by field, in place: a literal would be built on the stack and copied, and the
	// copy's wide loads of the key just stored in overlapping pieces stall (store forwarding).
	e := &b.ent[w]
	e.key = *k
	e.svc, e.backend, e.pos, e.synced = uint16(svc.index), svc.backends[p].ID, uint16(p), 0
	if c.sy.track {
		c.noteSync(e, b.state[w], true, t)
	}
	c.c[cInserts]++
	c.c[cEntries]++
	st.conns[p]++
	st.live++
	return p, true
}

// position returns the position of e's backend in svc, or -1: the entry's hint when the
// backend still stands there (it does until a snapshot reorders or removes backends), else
// the ID index's answer, which becomes the hint.
func (c *Core) position(svc *Service, e *entry) int32 {
	if p := int(e.pos); p < len(svc.backends) && svc.backends[p].ID == e.backend {
		return int32(p)
	}
	p := svc.ids.lookup(e.backend)
	if p >= 0 {
		e.pos = uint16(p)
	}
	return p
}

// reschedule moves the known flow at way w of b, whose backend is gone or down, to a new
// backend of svc (or drops the entry when none can take it).
func (c *Core) reschedule(svc *Service, b *bucket, w int, k *Key, tcpFlags uint8, now int64) int {
	t := tick(now)
	e := &b.ent[w]
	c.c[cRescheduled]++
	c.release(e)
	st := &c.svcs[svc.index]
	p := c.choose(st, svc, k, now)
	if p < 0 {
		c.gone(b, w, true)
		c.remove(b, w)
		c.c[cNoBackend]++
		return -1
	}
	e.svc, e.backend, e.pos = uint16(svc.index), svc.backends[p].ID, uint16(p)
	b.state[w] = newState(k.Proto, tcpFlags)
	b.seen[w] = t
	if c.sy.track {
		c.noteSync(e, b.state[w], true, t)
	}
	st.conns[p]++
	st.live++
	runtime.KeepAlive(c) // see newTable
	return p
}

// victim frees a way of b1 or b2 for a new entry: a free one of b1, else of b2, else one
// that relocate frees, else the idle-expired one seen longest ago, else the least recently
// seen of the 16 (an eviction). A way it evicts keeps its old tag: the caller writes the new
// one at once.
func (c *Core) victim(b1, b2 *bucket, t uint32) (*bucket, int) {
	// A full table, the usual state once a flood has filled it, has no free way to find
	// and nothing to relocate: one compare skips both searches.
	if c.c[cEntries] < c.c[cCapacity] {
		if b, w := c.room(b1, b2); w >= 0 {
			return b, w
		}
	}
	var i int
	var age uint32
	if hasAVX2 {
		i, age = oldestPairAVX2(&b1.seen, &b2.seen, t)
	} else {
		i, age = oldestPairGo(&b1.seen, &b2.seen, t)
	}
	// An idle-expired entry goes first, the oldest of them. None can have expired when the
	// oldest age is within the shortest timeout, the usual case when floods fill the table.
	if age > c.minTimeout {
		if b, w := c.expiredOf(b1, b2, t); w >= 0 {
			return b, w
		}
	}
	b, w := b1, i
	if i >= ways {
		b, w = b2, i-ways
	}
	c.gone(b, w, false)
	c.c[cEvictions]++
	c.release(&b.ent[w])
	c.unlink(b, w)
	c.c[cEntries]--
	return b, w
}

// room returns a free way of b1, else of b2, else one that relocate frees while the table
// is not nearly full (see relocMax); -1 when there is none.
func (c *Core) room(b1, b2 *bucket) (*bucket, int) {
	if w := b1.free(); w >= 0 {
		return b1, w
	}
	if w := b2.free(); w >= 0 {
		return b2, w
	}
	if c.c[cEntries] < c.relocMax { // else nearly full: the LRU eviction decides
		if w := c.relocate(b1); w >= 0 {
			return b1, w
		}
		if w := c.relocate(b2); w >= 0 {
			return b2, w
		}
	}
	return nil, -1
}

// expiredOf expires the idle-expired entry of b1 and b2 seen longest ago and returns its
// way, or -1 when none has expired.
func (c *Core) expiredOf(b1, b2 *bucket, t uint32) (*bucket, int) {
	exp, expAge := -1, uint32(0)
	for j, b := range [2]*bucket{b1, b2} {
		for w := range ways {
			if a := t - b.seen[w]; a > c.timeout[b.state[w]] && a > expAge {
				expAge, exp = a, j*ways+w
			}
		}
	}
	if exp < 0 {
		return nil, -1
	}
	b, w := b1, exp
	if exp >= ways {
		b, w = b2, exp-ways
	}
	c.expire(b, w)
	return b, w
}

// ownVictim frees a way of b1 or b2 for a new flow of service si, which is at its quota:
// an idle-expired entry (of any service), else the least recently seen of si's own entries
// (an eviction). It returns -1 when neither bucket holds one: the service may not take
// another's room.
func (c *Core) ownVictim(b1, b2 *bucket, si int, t uint32) (*bucket, int) {
	var best *bucket
	bw, bestAge, expired := -1, uint32(0), false
	for _, b := range [2]*bucket{b1, b2} {
		for w := range ways {
			if !b.used(w) {
				continue
			}
			age := t - b.seen[w]
			exp := age > c.timeout[b.state[w]]
			own := int(b.ent[w].svc) == si
			switch {
			case exp && (!expired || age > bestAge):
				best, bw, bestAge, expired = b, w, age, true
			case !expired && own && (bw < 0 || age > bestAge):
				best, bw, bestAge = b, w, age
			}
		}
	}
	if bw < 0 {
		return nil, -1
	}
	if expired {
		c.expire(best, bw)
	} else {
		c.gone(best, bw, false)
		c.c[cEvictions]++
		c.release(&best.ent[bw])
		c.remove(best, bw)
	}
	return best, bw
}

// relocate frees a way of the full bucket b (victim calls it while the table is not nearly
// full, see relocMax) by moving one of the flows that live in b as their first choice to
// their second bucket, if that has a free way (one step of cuckoo hashing). It returns the
// freed way, or -1. Without it, a flow that prefers b1 could evict a live flow at 75% fill;
// with it, evictions start near full (TestCoreLoadFactor). It hashes up to 8 keys again,
// only on an insert that finds both buckets full.
func (c *Core) relocate(b *bucket) int {
	for w := range ways {
		if b.alt&(1<<w) != 0 {
			continue
		}
		e := &b.ent[w]
		h := c.secret.hash(&e.key)
		i1, i2 := c.t.index(h)
		d := &c.t.b[i2]
		if &c.t.b[i1] != b || d == b {
			continue
		}
		dw := d.free()
		if dw < 0 {
			continue
		}
		d.setTag(dw, uint16(h)|1)
		d.seen[dw], d.state[dw], d.ent[dw] = b.seen[w], b.state[w], *e
		d.alt |= 1 << dw
		b.over++
		b.setTag(w, 0)
		return w
	}
	return -1
}

// expire removes the idle entry at way w of b.
func (c *Core) expire(b *bucket, w int) {
	c.release(&b.ent[w])
	c.remove(b, w)
	c.c[cExpirations]++
}

// remove frees way w of b.
func (c *Core) remove(b *bucket, w int) {
	c.unlink(b, w)
	b.setTag(w, 0)
	c.c[cEntries]--
}

// unlink takes way w of b out of two-choice hashing's overflow bookkeeping: an entry that
// lived in its second bucket is taken off its first bucket's overflow count (found by
// hashing its key again: removals are rare next to lookups). The way keeps its tag. The
// test is inlined; the rehash is a call only for the entries that need it.
func (c *Core) unlink(b *bucket, w int) {
	if b.alt&(1<<w) != 0 {
		c.unlinkAlt(b, w)
	}
}

// unlinkAlt is unlink of an entry that lives in its second bucket.
func (c *Core) unlinkAlt(b *bucket, w int) {
	b.alt &^= 1 << w
	i1, _ := c.t.index(c.secret.hash(&b.ent[w].key))
	c.t.b[i1].over--
}

// release takes entry e off its backend's flow count.
func (c *Core) release(e *entry) {
	if int(e.svc) >= len(c.svcs) {
		return
	}
	st := &c.svcs[e.svc]
	if st.svc == nil {
		return
	}
	p := int32(e.pos) // the entry's hint, else the ID index (as in position)
	if int(p) >= len(st.svc.backends) || st.svc.backends[p].ID != e.backend {
		p = st.svc.ids.lookup(e.backend)
	}
	if p >= 0 && int(p) < len(st.conns) && st.conns[p] > 0 {
		st.conns[p]--
		st.live--
	}
}

// Maintain expires idle entries in the next CoreConfig.SweepBuckets buckets (the sweep goes
// round the table) and publishes the counters that Stats reads. Call it once per batch
// with the batch's clock reading; it does not allocate.
func (c *Core) Maintain(now int64) {
	t := tick(now)
	for range c.sweep {
		b := &c.t.b[c.sweepAt]
		if c.sweepAt++; c.sweepAt == len(c.t.b) {
			c.sweepAt = 0
		}
		// The oldest age of the bucket first (free ways included: branch-free), so a bucket
		// with nothing idle past the shortest timeout costs no walk of its ways.
		var age uint32
		if hasAVX2 {
			age = maxAgeAVX2(&b.seen, t)
		} else {
			age = uint32(b.oldest(t, ways-1) >> 8)
		}
		if age <= c.minTimeout {
			continue
		}
		for j, tags := range b.tags {
			for m := ^zeroLanes(tags) & laneHigh; m != 0; m &= m - 1 { // the used ways
				if w := way(j, m); t-b.seen[w] > c.timeout[b.state[w]] {
					c.expire(b, w)
				}
			}
		}
	}
	c.prefetchSweep()
	c.publish()
}

// publish copies the counters that changed since the last call into the atomics Stats
// reads. Only changed ones: an atomic store is an XCHG on amd64, which waits for the
// store buffer to drain, and a batch of hits changes one or two of the twelve.
func (c *Core) publish() {
	for i := range c.c {
		if c.pub[i].Load() != c.c[i] {
			c.pub[i].Store(c.c[i])
		}
	}
}

// Stats returns the counters as of the last Maintain (or NewCore). Safe for concurrent use
// with the owner's calls: the owner counts in plain fields and Maintain copies them into
// atomics, so a reader sees a consistent value per counter, at most one batch old.
func (c *Core) Stats() Stats {
	return Stats{
		Entries:     c.pub[cEntries].Load(),
		Capacity:    c.pub[cCapacity].Load(),
		Hits:        c.pub[cHits].Load(),
		Misses:      c.pub[cMisses].Load(),
		Inserts:     c.pub[cInserts].Load(),
		Evictions:   c.pub[cEvictions].Load(),
		Expirations: c.pub[cExpirations].Load(),
		Rescheduled: c.pub[cRescheduled].Load(),
		NoBackend:   c.pub[cNoBackend].Load(),
		OverQuota:   c.pub[cOverQuota].Load(),
		Persisted:   c.pub[cPersisted].Load(),
		OnePacket:   c.pub[cOnePacket].Load(),
	}
}

// ActiveFlows returns the number of this core's connection-table entries on the backend at
// position i of svc (the least-conn figure). Owner only.
func (c *Core) ActiveFlows(svc *Service, i int) int {
	if svc == nil || svc.index >= len(c.svcs) || c.svcs[svc.index].svc != svc || i < 0 || i >= len(svc.backends) {
		return 0
	}
	return int(c.svcs[svc.index].conns[i])
}
