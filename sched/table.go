package sched

import (
	"math/bits"
	"time"

	"github.com/xlb-dev/xlb/sched/internal/hugepage"
)

// TCP flag bits as they appear in byte 13 of the TCP header; Core.Schedule takes them in
// this form (0 for UDP and everything else).
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagACK uint8 = 0x10
)

// Timeouts are the idle timeouts of connection-table entries, by protocol and TCP state,
// kept to 65.5 microseconds (and at most 24h). The
// balancer sees one direction of a TCP connection (client to server), so the state is
// inferred from the client's flags: SYN only (SynRecv), data (Established), after a FIN
// (FinWait), after an RST (Close).
type Timeouts struct {
	TCPSynRecv     time.Duration // LVS syn_recv: 60s
	TCPEstablished time.Duration // LVS established: 900s
	TCPFinWait     time.Duration // LVS fin_wait: 120s
	TCPClose       time.Duration // LVS close: 10s
	UDP            time.Duration // LVS udp: 300s
	Other          time.Duration // ICMP and other protocols (LVS icmp: 60s)
}

// DefaultTimeouts returns LVS's defaults (net/netfilter/ipvs/ip_vs_proto_tcp.c, _udp.c).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynRecv:     60 * time.Second,
		TCPEstablished: 900 * time.Second,
		TCPFinWait:     120 * time.Second,
		TCPClose:       10 * time.Second,
		UDP:            300 * time.Second,
		Other:          60 * time.Second,
	}
}

// Connection states, one per timeout.
const (
	stSynRecv uint8 = iota
	stEstablished
	stFinWait
	stClose
	stUDP
	stOther
	numStates
)

// The table keeps time in ticks of 2^16 ns (65.5 us) in 32 bits, so a bucket's tags and
// last-seen times share one cache line. Ages are computed modulo 2^32 ticks (78 hours): an
// entry left untouched for that long would look young again, which Maintain's sweep (round
// the whole table many times an hour) and the timeouts (capped at maxTimeout) rule out.
const (
	tickShift  = 16
	maxTimeout = 24 * time.Hour
)

// tick converts a clock reading in nanoseconds to table ticks.
func tick(now int64) uint32 { return uint32(uint64(now) >> tickShift) }

// table returns the timeouts in ticks (rounded up), indexed by state; a zero field takes its
// default, and a timeout above maxTimeout is capped to it.
func (t Timeouts) table() [numStates]uint32 {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) uint32 {
		if v <= 0 {
			v = def
		}
		v = min(v, maxTimeout)
		return uint32((int64(v) + 1<<tickShift - 1) >> tickShift)
	}
	return [numStates]uint32{
		stSynRecv:     pick(t.TCPSynRecv, d.TCPSynRecv),
		stEstablished: pick(t.TCPEstablished, d.TCPEstablished),
		stFinWait:     pick(t.TCPFinWait, d.TCPFinWait),
		stClose:       pick(t.TCPClose, d.TCPClose),
		stUDP:         pick(t.UDP, d.UDP),
		stOther:       pick(t.Other, d.Other),
	}
}

const (
	protoTCP = 6
	protoUDP = 17
)

// newState is the state of a flow's first packet.
func newState(proto, flags uint8) uint8 {
	switch proto {
	case protoTCP:
		switch {
		case flags&FlagRST != 0:
			return stClose
		case flags&FlagFIN != 0:
			return stFinWait
		case flags&(FlagSYN|FlagACK) == FlagSYN:
			return stSynRecv
		}
		return stEstablished // mid-flow packet: a flow taken over from another core or host
	case protoUDP:
		return stUDP
	}
	return stOther
}

// nextState is the state after one more packet of a known flow.
func nextState(cur, flags uint8) uint8 {
	if cur >= stUDP {
		return cur
	}
	switch {
	case flags&FlagRST != 0:
		return stClose
	case flags&FlagFIN != 0:
		if cur == stClose {
			return cur
		}
		return stFinWait
	case flags&(FlagSYN|FlagACK) == FlagSYN:
		if cur == stFinWait || cur == stClose {
			return stSynRecv // the client reuses the tuple for a new connection
		}
		return cur
	case flags&FlagACK != 0 && cur == stSynRecv:
		return stEstablished
	}
	return cur
}

// stateStep is nextState and reused as a table for ScheduleHashed's hit: by state (the 3
// low bits; states are fewer than 8) and the flags the state machine reads (FIN, SYN and RST
// in their places, ACK moved down to bit 3), the next state, with stepReused set when the
// packet reuses the tuple of a closed flow.
var stateStep = func() (t [8][16]uint8) {
	for st := range uint8(8) {
		for i := range uint8(16) {
			flags := i&7 | i&8<<1
			if st >= numStates {
				t[st][i] = st
				continue
			}
			t[st][i] = nextState(st, flags)
			if reused(st, flags) {
				t[st][i] |= stepReused
			}
		}
	}
	return t
}()

const stepReused = 0x80

// ways is the associativity of the connection table.
const ways = 8

// entry is one connection: the full key (compared on a tag match), the service index, the
// backend ID and where that backend last stood in the service's list (so that a hit checks
// one ID instead of probing the ID index). 48 bytes.
type entry struct {
	key     Key // 38 bytes
	svc     uint16
	backend uint32
	pos     uint16 // the backend's position in the service when last seen: a hint
	synced  uint16 // connection sync: when peers last heard of it (Core.SetSync)
}

// bucket is one set of the table: a 64-byte header line, then 8 entries. The header holds
// everything but the entries: 8 tags of 16 bits (uint16(hash)|1, 0 = free) packed four to a
// word so that one compare-and-mask step matches four of them, 8 last-seen times in ticks,
// 8 TCP states, and the overflow bookkeeping of two-choice hashing with a preferred
// bucket: a new flow goes to its first bucket while that has room, to its second only when
// the first is full, and the first counts it (over), so a lookup reads the second bucket
// only when the first has overflowed (at the loads the table runs at, most buckets never
// have). A lookup reads one header and, on a tag match, that entry (one or two lines);
// idle expiry and victim choice read only headers. 64 + 384 = 448 bytes, 56 per entry.
type bucket struct {
	tags  [2]uint64
	seen  [ways]uint32
	state [ways]uint8
	over  uint32 // flows whose first choice is this bucket that live in their second
	alt   uint8  // ways holding a flow whose first choice is another bucket
	_     [3]byte
	ent   [ways]entry
}

// BytesPerEntry is the connection table's memory per entry (a 448-byte bucket holds 8).
const BytesPerEntry = 56

// table is the fixed-size set-associative connection table of one core.
type table struct {
	b []bucket
}

// newTable allocates a table of at least capacity entries in a mapping of its own, advised
// for huge pages before first touch (a 1M-entry table spans 28 000 small pages, more than
// the TLB holds; on huge pages the lookups skip most page walks), or on Go's heap when the
// mapping fails. free unmaps it (nil for heap memory); NewCore has it called when the Core
// is garbage. So a Core method must use c after its last access to the table (or call
// runtime.KeepAlive(c)): else, on a core dropped right after that call, the collector may
// unmap the table under the method.
func newTable(capacity int) (t table, free func() error) {
	n := max((capacity+ways-1)/ways, 1)
	b, free, err := hugepage.Alloc[bucket](n)
	if err != nil {
		b, free = make([]bucket, n), nil
	}
	return table{b: b}, free
}

// A flow has two candidate buckets (two-choice hashing: it lives in either, so a bucket
// overflows only when both are full): the first comes from h's high bits, the second from a
// remix of h; both by multiply-high over the bucket count, so any count works. The tag
// stored for h is uint16(h)|1.

// first returns the first-choice bucket of hash h and h's tag: all a hit in that bucket
// needs.
func (t *table) first(h uint64) (*bucket, uint16) {
	i1, _ := bits.Mul64(h, uint64(len(t.b)))
	return &t.b[i1], uint16(h) | 1
}

// second returns the second-choice bucket of hash h.
func (t *table) second(h uint64) *bucket {
	_, i2 := t.index(h)
	return &t.b[i2]
}

// index returns the two bucket numbers of hash h.
func (t *table) index(h uint64) (int, int) {
	n := uint64(len(t.b))
	i1, _ := bits.Mul64(h, n)
	i2, _ := bits.Mul64(h*0xff51afd7ed558ccd^h>>29, n)
	return int(i1), int(i2)
}

// Lanes of a tag word: four 16-bit tags.
const (
	laneOnes = 0x0001000100010001
	laneLow  = 0x7fff7fff7fff7fff
	laneHigh = 0x8000800080008000
)

// zeroLanes returns bit 15 of every 16-bit lane of x that is zero, and no other bit
// (exact: no borrow crosses lanes).
func zeroLanes(x uint64) uint64 {
	return ^(((x & laneLow) + laneLow) | x) & laneHigh
}

// match returns the ways of b whose tag is tag, as two lane masks (ways 0-3, ways 4-7):
// bit 16*i+15 of m[j] is way 4*j+i. It reads only the header.
func (b *bucket) match(tag uint16) (m0, m1 uint64) {
	t := uint64(tag) * laneOnes
	return zeroLanes(b.tags[0] ^ t), zeroLanes(b.tags[1] ^ t)
}

// way returns the way of the lowest bit of lane mask m of word j.
func way(j int, m uint64) int { return 4*j + bits.TrailingZeros64(m)>>4 }

// firstWay returns the lowest way in the lane masks m0, m1 of match, or -1.
func firstWay(m0, m1 uint64) int {
	switch {
	case m0 != 0:
		return way(0, m0)
	case m1 != 0:
		return way(1, m1)
	}
	return -1
}

// find returns the way of b that holds k (tag tag), or -1.
func (b *bucket) find(tag uint16, k *Key) int {
	m0, m1 := b.match(tag)
	for ; m0 != 0; m0 &= m0 - 1 {
		if w := way(0, m0); b.ent[w].key.equal(k) {
			return w
		}
	}
	for ; m1 != 0; m1 &= m1 - 1 {
		if w := way(1, m1); b.ent[w].key.equal(k) {
			return w
		}
	}
	return -1
}

// setTag writes the tag of way w (0 frees it).
func (b *bucket) setTag(w int, tag uint16) {
	s := uint(w&3) * 16
	b.tags[w>>2] = b.tags[w>>2]&^(0xffff<<s) | uint64(tag)<<s
}

// used reports whether way w holds an entry.
func (b *bucket) used(w int) bool { return b.tags[w>>2]>>(uint(w&3)*16)&0xffff != 0 }

// oldest returns the largest age<<8 | (id-w) over the ways w of b (ages at tick t, id >= 7):
// the oldest way, the lowest among equal ages. Conditional moves in a tree three deep (the
// ages are arbitrary, so a branch on each would mispredict, and a chain of eight maxima
// would make each wait for the last).
func (b *bucket) oldest(t uint32, id uint64) uint64 { return oldestOf(&b.seen, t, id) }

// oldestOf is bucket.oldest over a bucket's last-seen times s.
func oldestOf(s *[ways]uint32, t uint32, id uint64) uint64 {
	a := func(w int) uint64 { return uint64(t-s[w])<<8 | (id - uint64(w)) }
	return max(max(max(a(0), a(1)), max(a(2), a(3))), max(max(a(4), a(5)), max(a(6), a(7))))
}

// free returns the first free way of b, or -1. A full bucket, the usual case when a flood
// has filled the table, is one test. Ways 0-3 fill first, so a hit on a bucket of up to
// four flows matches the first tag word only (see ScheduleFlow).
func (b *bucket) free() int {
	m0, m1 := zeroLanes(b.tags[0]), zeroLanes(b.tags[1])
	if m0|m1 == 0 {
		return -1
	}
	if m0 != 0 {
		return bits.TrailingZeros64(m0) >> 4
	}
	return 4 + bits.TrailingZeros64(m1)>>4
}
