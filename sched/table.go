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

// ways is the associativity of the connection table.
const ways = 8

// entry is one connection: the full key (compared on a tag match), the TCP state, the
// service index and the backend ID. 48 bytes.
type entry struct {
	key     Key // 38 bytes
	state   uint8
	svc     uint16
	backend uint32
}

// bucket is one set of the table: a 64-byte header of 8 tags (uint32(hash)|1, 0 = free) and
// 8 last-seen times in ticks, then 8 entries. 64 + 384 = 448 bytes, 56 bytes per entry. A
// lookup reads the header line and the matching entry.
type bucket struct {
	tag  [ways]uint32
	seen [ways]uint32
	ent  [ways]entry
}

// BytesPerEntry is the connection table's memory per entry (a 448-byte bucket holds 8).
const BytesPerEntry = 56

// table is the fixed-size set-associative connection table of one core.
type table struct {
	b []bucket
}

func newTable(capacity int) table {
	n := (capacity + ways - 1) / ways
	b := make([]bucket, max(n, 1))
	_ = hugepage.Advise(b) // advice only: without huge pages the table works the same
	return table{b: b}
}

// buckets returns the two candidate buckets of hash h (two-choice hashing: a flow lives in
// either, so a bucket overflows only when both are full) and the tag stored for h. The first
// comes from h's high bits, the second from a remix of h; both by multiply-high over the
// bucket count, so any count works.
func (t *table) buckets(h uint64) (b1, b2 *bucket, tag uint32) {
	i1, i2 := t.index(h)
	return &t.b[i1], &t.b[i2], uint32(h) | 1
}

// index returns the two bucket numbers of hash h.
func (t *table) index(h uint64) (int, int) {
	n := uint64(len(t.b))
	i1, _ := bits.Mul64(h, n)
	i2, _ := bits.Mul64(h*0xff51afd7ed558ccd^h>>29, n)
	return int(i1), int(i2)
}

// match returns the ways of b whose tag is tag, as a bit mask. It reads only the header.
func (b *bucket) match(tag uint32) uint32 {
	var m uint32
	for w := range ways {
		if b.tag[w] == tag {
			m |= 1 << w
		}
	}
	return m
}

// find returns the way among the candidates m of b that holds k, or -1.
func (b *bucket) find(m uint32, k *Key) int {
	for ; m != 0; m &= m - 1 {
		w := bits.TrailingZeros32(m)
		if b.ent[w].key == *k {
			return w
		}
	}
	return -1
}

// free returns the number of free ways of b and the first of them.
func (b *bucket) free() (n, first int) {
	first = -1
	for w := range ways {
		if b.tag[w] == 0 {
			if n++; first < 0 {
				first = w
			}
		}
	}
	return n, first
}
