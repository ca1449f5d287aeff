package connsync

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// tableWays is the associativity of a Table: a full bucket evicts its oldest of 8.
const tableWays = 8

// BytesPerEntry is a Table's memory per entry (a 640-byte bucket holds 8).
const BytesPerEntry = 80

// slot is one entry under a sequence lock: seq is odd while the writer changes the words.
// Words: 0-1 key source, 2-3 key destination, 4 ports/protocol/flags/state (bit 40 key
// IPv6, 41 backend IPv6, 42 template, 48-55 state, 56 used, 57-63 the writing sender's
// tag), 5-6 backend address, 7 backend port | received (ms since the table's start) << 16.
type slot struct {
	seq atomic.Uint64
	w   [8]atomic.Uint64
}

const (
	usedBit     = 1 << 56
	templateBit = 1 << 42
	senderShift = 57
)

// senderTag is the 7 bits of a sender id a slot keeps, so that a removal only removes what
// the same sender wrote (in an ECMP cluster another host may hold the flow now).
func senderTag(sender uint64) uint64 { return (sender ^ sender>>32) & 0x7f }

// bucket is 8 slots behind a header line: per way a tag (32 bits of the key's hash, or'ed
// with 1; 0 = free) and when its entry was last written (ms since the table's start, mod
// 2^32). A lookup reads the header and only the slot whose tag matches; a write picks its
// slot from the header alone.
type bucket struct {
	tag  [tableWays]atomic.Uint32
	at   [tableWays]atomic.Uint32
	slot [tableWays]slot
}

// Table holds the connections peers sent, in fixed memory: capacity entries in buckets of
// 8, a new entry taking a free or expired slot of its bucket, else the oldest one (an
// eviction). One goroutine writes (the Node's receiver); any number read, without locks.
//
// It also holds the peers' persistence templates (KindTemplate), keyed by client prefix
// and service, under keys that never equal a connection's.
type Table struct {
	b       []bucket
	seed    maphash.Seed
	start   time.Time
	timeout [sched.NumConnStates + 1]int64 // ms, by state; the last: templates (see NewTable)

	entries, evictions, expired, updates, removed atomic.Uint64 // writer's counters
	templates                                     atomic.Uint64 // template records written
	hits, templateHits                            atomic.Uint64 // lookups that found a live entry
}

// templateState is the timeout index of a template slot. A template's expiry is checked
// against its service's persistence timeout (LookupTemplate's argument); the table's own
// bound, used to tell an expired slot from a live one when a full bucket makes room, is
// the longest persistence timeout there is (24h).
const templateState = sched.NumConnStates

const maxTemplateTimeout = 24 * time.Hour

// NewTable returns a table of at least capacity entries (rounded up to a multiple of 8)
// whose entries expire by timeouts.
func NewTable(capacity int, timeouts sched.Timeouts) *Table {
	n := max((capacity+tableWays-1)/tableWays, 1)
	t := &Table{b: make([]bucket, n), seed: maphash.MakeSeed(), start: time.Now()}
	for s := range sched.NumConnStates {
		t.timeout[s] = timeouts.Timeout(sched.ConnState(s)).Milliseconds()
	}
	t.timeout[templateState] = maxTemplateTimeout.Milliseconds()
	return t
}

// Capacity returns the number of entries the table holds at most.
func (t *Table) Capacity() int { return len(t.b) * tableWays }

func (t *Table) now() int64 { return time.Since(t.start).Milliseconds() }

func (t *Table) bucket(k *sched.Key, tpl bool) (*bucket, uint32) {
	var e [39]byte
	copy(e[0:16], k.Src[:])
	copy(e[16:32], k.Dst[:])
	binary.LittleEndian.PutUint16(e[32:], k.SrcPort)
	binary.LittleEndian.PutUint16(e[34:], k.DstPort)
	e[36] = k.Proto
	if k.V6 {
		e[37] = 1
	}
	if tpl {
		e[38] = 1
	}
	h := maphash.Bytes(t.seed, e[:])
	return &t.b[h%uint64(len(t.b))], uint32(h>>32) | 1
}

// keyWords returns k as the slot's words 0-4 (word 4 without the state), of a template
// when tpl is set.
func keyWords(k *sched.Key, tpl bool) [5]uint64 {
	w4 := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32 | usedBit
	if k.V6 {
		w4 |= 1 << 40
	}
	if tpl {
		w4 |= templateBit
	}
	return [5]uint64{binary.LittleEndian.Uint64(k.Src[0:]), binary.LittleEndian.Uint64(k.Src[8:]),
		binary.LittleEndian.Uint64(k.Dst[0:]), binary.LittleEndian.Uint64(k.Dst[8:]), w4}
}

const keyMask4 = 1<<41 - 1 | usedBit | templateBit // word 4's key bits

// Lookup returns the live entry of flow k. Safe for concurrent use with Put; it does not
// allocate.
func (t *Table) Lookup(k *sched.Key, r *Record) bool {
	if t.entries.Load() == 0 {
		return false // nothing from the peers yet (a VRRP master whose backup sends nothing)
	}
	if t.find(k, false, 0, r) {
		t.hits.Add(1)
		return true
	}
	return false
}

// LookupTemplate returns the persistence template of key k (the client prefix and the
// service, as KindTemplate records carry them) when it was received within timeout. Safe
// for concurrent use with Put; it does not allocate.
func (t *Table) LookupTemplate(k *sched.Key, timeout time.Duration, r *Record) bool {
	if t.templates.Load() == 0 {
		return false
	}
	if t.find(k, true, timeout.Milliseconds(), r) {
		t.templateHits.Add(1)
		return true
	}
	return false
}

func (t *Table) find(k *sched.Key, tpl bool, timeout int64, r *Record) bool {
	b, tag := t.bucket(k, tpl)
	for i := range b.tag {
		if b.tag[i].Load() == tag && t.read(&b.slot[i], k, tpl, timeout, r) {
			return true
		}
	}
	return false
}

// read copies slot s into r when it holds k (a template when tpl is set, which expires
// after timeout ms), live; a read that races the writer is tried again, a few times.
func (t *Table) read(s *slot, k *sched.Key, tpl bool, timeout int64, r *Record) bool {
	kw := keyWords(k, tpl)
	for range 4 {
		s1 := s.seq.Load()
		if s1&1 != 0 {
			continue
		}
		var w [8]uint64
		for j := range w {
			w[j] = s.w[j].Load()
		}
		if s.seq.Load() != s1 {
			continue
		}
		if w[0] != kw[0] || w[1] != kw[1] || w[2] != kw[2] || w[3] != kw[3] || w[4]&keyMask4 != kw[4] {
			return false
		}
		st := sched.ConnState(w[4] >> 48 & 0xff)
		if !tpl {
			if int(st) >= sched.NumConnStates {
				return false
			}
			timeout = t.timeout[st]
		}
		if t.now()-int64(w[7]>>16) > timeout {
			return false
		}
		r.Key, r.State, r.Kind = *k, st, KindConn
		if tpl {
			r.Kind = KindTemplate
		}
		binary.LittleEndian.PutUint64(r.Backend[0:], w[5])
		binary.LittleEndian.PutUint64(r.Backend[8:], w[6])
		r.BackendPort, r.BackendV6 = uint16(w[7]), w[4]&(1<<41) != 0
		return true
	}
	return false
}

// Put stores (or refreshes) r, received now, as Apply does for sender 0. The single
// writer only.
func (t *Table) Put(r *Record) { t.Apply(r, 0) }

// Apply writes record r of sender (the message's sender id) to the table: a connection or
// a template is stored (or refreshed), a removal removes the flow's entry when sender wrote
// it last (in an ECMP cluster another host may have taken the flow over and sent it
// since; a slot keeps 7 bits of its writer's id). It reports whether the table changed.
// The single writer only.
func (t *Table) Apply(r *Record, sender uint64) bool {
	tpl := r.Kind == KindTemplate
	kw := keyWords(&r.Key, tpl)
	b, tag := t.bucket(&r.Key, tpl)
	if r.Kind == KindRemove {
		return t.remove(b, tag, kw, sender)
	}
	now := t.now()
	free, old := -1, -1
	var oldAge uint32
	for i := range b.tag {
		switch g := b.tag[i].Load(); {
		case g == 0:
			if free < 0 {
				free = i
			}
			continue
		case g == tag && t.holds(&b.slot[i], kw):
			t.write(b, i, tag, kw, r, sender, now)
			t.updates.Add(1)
			return true
		}
		if age := uint32(now) - b.at[i].Load(); old < 0 || age > oldAge {
			old, oldAge = i, age
		}
	}
	if tpl {
		t.templates.Add(1)
	}
	if free >= 0 {
		t.entries.Add(1)
		t.write(b, free, tag, kw, r, sender, now)
		return true
	}
	st := int(b.slot[old].w[4].Load() >> 48 & 0xff)
	if b.slot[old].w[4].Load()&templateBit != 0 {
		st = templateState
	}
	if int64(oldAge) > t.timeout[min(st, templateState)] {
		t.expired.Add(1)
	} else {
		t.evictions.Add(1)
	}
	t.write(b, old, tag, kw, r, sender, now)
	return true
}

// holds reports whether slot s holds key words kw. The writer only.
func (t *Table) holds(s *slot, kw [5]uint64) bool {
	return s.w[0].Load() == kw[0] && s.w[1].Load() == kw[1] && s.w[2].Load() == kw[2] &&
		s.w[3].Load() == kw[3] && s.w[4].Load()&keyMask4 == kw[4]
}

// remove frees the slot of key words kw if sender wrote it last.
func (t *Table) remove(b *bucket, tag uint32, kw [5]uint64, sender uint64) bool {
	for i := range b.tag {
		if b.tag[i].Load() != tag {
			continue
		}
		s := &b.slot[i]
		w4 := s.w[4].Load()
		if !t.holds(s, kw) || w4>>senderShift != senderTag(sender) {
			continue
		}
		q := s.seq.Load()
		s.seq.Store(q + 1)
		b.tag[i].Store(0)
		s.w[4].Store(0)
		s.seq.Store(q + 2)
		t.entries.Add(^uint64(0))
		t.removed.Add(1)
		return true
	}
	return false
}

func (t *Table) write(b *bucket, i int, tag uint32, kw [5]uint64, r *Record, sender uint64, now int64) {
	s := &b.slot[i]
	q := s.seq.Load()
	s.seq.Store(q + 1)
	b.tag[i].Store(tag)
	b.at[i].Store(uint32(now))
	for j := range 4 {
		s.w[j].Store(kw[j])
	}
	w4 := kw[4] | uint64(r.State)<<48 | senderTag(sender)<<senderShift
	if r.BackendV6 {
		w4 |= 1 << 41
	}
	s.w[4].Store(w4)
	s.w[5].Store(binary.LittleEndian.Uint64(r.Backend[0:]))
	s.w[6].Store(binary.LittleEndian.Uint64(r.Backend[8:]))
	s.w[7].Store(uint64(r.BackendPort) | uint64(now)<<16)
	s.seq.Store(q + 2)
}

// TableStats are a Table's counters.
type TableStats struct {
	Capacity  uint64
	Entries   uint64 // slots in use (expired ones count until reused)
	Updates   uint64 // records that refreshed an entry already there
	Expired   uint64 // new entries that took an expired entry's slot
	Evictions uint64 // live entries dropped for a new one (the oldest of a full bucket)
	Hits      uint64 // connection lookups that found a live entry
	Removed   uint64 // entries removal records removed
	Templates uint64 // template records that took a slot of their own (refreshes are Updates)
	// TemplateHits counts new clients of a persistent service found in the peers' templates.
	TemplateHits uint64
}

// Stats returns the table's counters. Safe for concurrent use.
func (t *Table) Stats() TableStats {
	return TableStats{Capacity: uint64(t.Capacity()), Entries: t.entries.Load(), Updates: t.updates.Load(),
		Expired: t.expired.Load(), Evictions: t.evictions.Load(), Hits: t.hits.Load(),
		Removed: t.removed.Load(), Templates: t.templates.Load(), TemplateHits: t.templateHits.Load()}
}
