package connsync

import (
	"sync/atomic"

	"github.com/xlb-dev/xlb/sched"
)

// Record is one synced change: for a connection (KindConn) the flow's key, the backend it
// goes to (address and port as the service lists it) and its connection state; for a
// removal (KindRemove) the flow the sender dropped, the backend it had and its last state;
// for a persistence template (KindTemplate) the client prefix and service as its Key (see
// the message format in wire.go) and the backend. 64 bytes on the wire.
type Record struct {
	Key         sched.Key
	Backend     [16]byte // IPv4: the address in Backend[0:4], the rest zero
	BackendPort uint16
	BackendV6   bool
	State       sched.ConnState
	Kind        Kind
}

// Ring is a single-producer, single-consumer queue of Records: one worker pushes, the
// Node's sender pops. Its size is fixed at creation; Push never blocks and never
// allocates: when the ring is full the record is dropped and counted.
type Ring struct {
	buf  []Record
	mask uint64
	_    [48]byte // keep the producer's and the consumer's words on lines of their own
	tail atomic.Uint64
	_    [56]byte
	head atomic.Uint64
	_    [56]byte
	// Owned by the producer.
	headCache uint64
	drops     atomic.Uint64 // written by the producer only
}

// newRing returns a ring of size records (a power of two).
func newRing(size int) *Ring {
	size = max(size, 2)
	return &Ring{buf: make([]Record, size), mask: uint64(size - 1)}
}

// Push appends r; it reports false (and counts a drop) when the ring is full. Producer
// only.
func (q *Ring) Push(r *Record) bool {
	t := q.tail.Load()
	if t-q.headCache > q.mask {
		q.headCache = q.head.Load()
		if t-q.headCache > q.mask {
			q.drops.Store(q.drops.Load() + 1)
			return false
		}
	}
	q.buf[t&q.mask] = *r
	q.tail.Store(t + 1)
	return true
}

// Pop copies up to len(out) records into out and returns how many. Consumer only (the
// Node's sender; a test that runs no Node).
func (q *Ring) Pop(out []Record) int {
	h, t := q.head.Load(), q.tail.Load()
	n := min(int(t-h), len(out))
	for i := range n {
		out[i] = q.buf[(h+uint64(i))&q.mask]
	}
	q.head.Store(h + uint64(n))
	return n
}

// Drops returns how many records Push dropped on a full ring.
func (q *Ring) Drops() uint64 { return q.drops.Load() }

// Pushed returns how many records Push queued.
func (q *Ring) Pushed() uint64 { return q.tail.Load() }
