package sched

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
)

// Persistence makes all connections of one client prefix reach the same backend (IPVS's
// persistent services, ipvsadm -p and -M; keepalived's persistence_timeout and
// persistence_granularity) while the client has been seen within Timeout. The zero value
// turns it off.
type Persistence struct {
	// Timeout is how long a client's backend is remembered after its last new connection
	// (or, for a connection that carries traffic, its last second of traffic); 0 turns
	// persistence off. At least a second.
	Timeout time.Duration
	// Prefix4 and Prefix6 are the client prefix lengths that share a backend: 0 means 32
	// for IPv4 (one address) and 64 for IPv6 (one /64, what a host usually holds).
	Prefix4, Prefix6 int
}

// DefaultPersistSize is the number of clients a PersistTable remembers when its size is 0.
const DefaultPersistSize = 1 << 16

// MaxPersistSize is the largest PersistTable size.
const MaxPersistSize = 1 << 26

// persistWays is the associativity of the persistence table: a client prefix lives in one
// of the four slots of its bucket.
const persistWays = 4

// persistShift converts nanoseconds to the table's clock, ticks of 2^30 ns (1.07 s) in
// 32 bits: 146 years before it wraps.
const persistShift = 30

// PersistTable is the persistence memory shared by every worker core of a process: client
// prefix (of a service) -> backend ID and when the client was last seen. RSS spreads one
// client's connections over several queues, so a per-core table would let each core pick
// its own backend for the client; this one is shared.
//
// It is fixed-size (allocated once), set-associative (four slots per bucket; when all four
// hold live clients, the one seen longest ago is replaced), and lock-free: each slot is
// guarded by a sequence number (a seqlock per slot) that a writer takes with one
// compare-and-swap; a reader takes no lock and retries nothing (a slot being written reads
// as a miss). The table is consulted only for a new flow of a persistent service, and
// refreshed at most once a second per live flow, never on the common per-packet path.
// A client is identified by a 64-bit SipHash-1-3 of (service, prefix) under a random key drawn
// for the table, so two clients share a slot only on a 64-bit hash collision.
// The first connections of a new client that reach two cores at the same moment are each
// scheduled by their core; each core then writes its pick and reads the table back (a
// bucket is read in one order by all), and follows what it holds: they agree unless their
// writes and reads interleave within well under a microsecond. Every later connection
// follows what the table holds. Every method is safe for concurrent use.
type PersistTable struct {
	slots  []pslot
	k0, k1 uint64
	used   atomic.Int64 // slots ever filled (a gauge of occupancy, never decremented)
}

// pslot is one slot: a sequence number (odd while a writer holds it), the client's hash
// (0 = empty), the value (backend ID in the high 32 bits, last seen in the low 32) and, for
// connection sync, when peers last heard of it (written only by the slot's writer).
type pslot struct {
	seq    atomic.Uint64
	key    atomic.Uint64
	val    atomic.Uint64
	synced atomic.Uint64 // 32 bytes: two slots per cache line, a bucket in two lines
}

// NewPersistTable returns a table that remembers up to size clients (rounded up to a
// multiple of four; 0 means DefaultPersistSize).
func NewPersistTable(size int) (*PersistTable, error) {
	if size < 0 || size > MaxPersistSize {
		return nil, fmt.Errorf("%w: persistence table size %d not in 0..%d", ErrBadCore, size, MaxPersistSize)
	}
	if size == 0 {
		size = DefaultPersistSize
	}
	n := (size + persistWays - 1) / persistWays * persistWays
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return &PersistTable{
		slots: make([]pslot, n),
		k0:    binary.LittleEndian.Uint64(b[0:8]),
		k1:    binary.LittleEndian.Uint64(b[8:16]),
	}, nil
}

// Capacity returns the number of slots.
func (p *PersistTable) Capacity() int { return len(p.slots) }

// Used returns how many slots have ever held a client (at most Capacity).
func (p *PersistTable) Used() int { return int(p.used.Load()) }

// ClientPrefix returns k's source address cut to the persistence prefix of its family,
// the rest zero: what a client's persistence is keyed by (here, and in the templates that
// connection sync sends).
func (p Persistence) ClientPrefix(k *Key) (a [16]byte) {
	bits, n := p.Prefix4, 4
	if k.V6 {
		bits, n = p.Prefix6, 16
	}
	full := min(bits/8, n)
	copy(a[:full], k.Src[:full])
	if r := bits % 8; r != 0 && full < n {
		a[full] = k.Src[full] & byte(0xff<<(8-r))
	}
	return a
}

// persistKey is the identity of a client prefix of a service: never 0.
func (p *PersistTable) persistKey(svc *Service, k *Key) uint64 {
	var b [19]byte
	binary.LittleEndian.PutUint16(b[0:2], uint16(svc.index))
	n := 4
	if k.V6 {
		b[2], n = 1, 16
	}
	a := svc.persist.ClientPrefix(k)
	copy(b[3:3+n], a[:n])
	h := siphash13(p.k0, p.k1, b[:])
	if h == 0 {
		h = 1
	}
	return h
}

// bucket returns the first slot of key's bucket.
func (p *PersistTable) bucket(key uint64) int {
	i, _ := bits.Mul64(key, uint64(len(p.slots)/persistWays))
	return int(i) * persistWays
}

// lookup returns the backend ID remembered for key and when it was last seen, if that was
// within timeout (table ticks) of now.
func (p *PersistTable) lookup(key uint64, now, timeout uint32) (id, seen uint32, ok bool) {
	b := p.bucket(key)
	for i := b; i < b+persistWays; i++ {
		s := &p.slots[i]
		q := s.seq.Load()
		if q&1 != 0 || s.key.Load() != key {
			continue
		}
		v := s.val.Load()
		if s.seq.Load() != q {
			return 0, 0, false // being rewritten: treat as unknown
		}
		if now-uint32(v) > timeout {
			return 0, 0, false
		}
		return uint32(v >> 32), uint32(v), true
	}
	return 0, 0, false
}

// store remembers backend id for key, seen at now: in key's slot if it has one, else in
// an empty slot, else in the slot seen longest ago. When only is set, it refreshes key's
// slot if it names backend id and writes nothing otherwise. A slot another core is writing
// at the same moment is left to that core (persistence is remembered best-effort: both
// cores chose for the same client, or for clients that share a bucket).
func (p *PersistTable) store(key uint64, id, now uint32, only bool) {
	p.storeSync(key, id, now, only, 0)
}

// storeSync is store that also reports whether the peers should hear of the client's
// template (connection sync): when every > 0 and the write made a new template, moved it
// to another backend, or refreshed one whose peers last heard of it every ticks ago or
// more. One core reports each such write (the slot's writer).
func (p *PersistTable) storeSync(key uint64, id, now uint32, only bool, every uint32) (due bool) {
	b := p.bucket(key)
	victim, oldest := -1, uint32(0)
	for i := b; i < b+persistWays; i++ {
		s := &p.slots[i]
		k := s.key.Load()
		if k == key {
			if only && uint32(s.val.Load()>>32) != id {
				return false
			}
			victim = i
			break
		}
		if only {
			continue
		}
		age := ^uint32(0) // an empty slot first
		if k != 0 {
			age = now - uint32(s.val.Load())
		}
		if victim < 0 || age > oldest {
			victim, oldest = i, age
		}
	}
	if only && (victim < 0 || p.slots[victim].key.Load() != key) {
		return false
	}
	if victim < 0 {
		return false
	}
	s := &p.slots[victim]
	q := s.seq.Load()
	if q&1 != 0 || !s.seq.CompareAndSwap(q, q+1) {
		return false
	}
	k, v := s.key.Load(), s.val.Load()
	if k == 0 {
		p.used.Add(1)
	}
	s.key.Store(key)
	s.val.Store(uint64(id)<<32 | uint64(now))
	if every > 0 && (k != key || uint32(v>>32) != id || now-uint32(s.synced.Load()) >= every) {
		s.synced.Store(uint64(now))
		due = true
	}
	s.seq.Store(q + 2)
	return due
}

// persistTicks converts a persistence timeout to table ticks, rounded up.
func persistTicks(d time.Duration) uint32 {
	return uint32((int64(d) + 1<<persistShift - 1) >> persistShift)
}

// persistNow converts a clock reading in nanoseconds to table ticks.
func persistNow(now int64) uint32 { return uint32(uint64(now) >> persistShift) }
