package xsk

import (
	"sync/atomic"
	"unsafe"
)

// Desc is one rx or tx descriptor, laid out like the kernel's struct xdp_desc.
// Addr is a UMEM address (frame base plus the packet's offset in the frame),
// Len the packet length.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// ringOffsets locates a ring's shared words and entries inside its mapping
// (the kernel's struct xdp_ring_offset).
type ringOffsets struct {
	producer, consumer, desc, flags uint64
}

// ring is the index bookkeeping shared by the four ring kinds. The producer
// and consumer words are in memory shared with the kernel and are only
// touched with sync/atomic; cachedProd and cachedCons are this side's copies.
// On a ring this side produces (fill, tx), cachedProd is our own producer
// index (published by submit) and cachedCons the last consumer index read from
// the kernel. On a ring this side consumes (rx, completion), cachedCons is our
// own consumer index (published by release) and cachedProd the last producer
// index read from the kernel. Indexes are free-running uint32 and wrap.
type ring struct {
	producer   *uint32
	consumer   *uint32
	flags      *uint32
	mask       uint32
	size       uint32
	cachedProd uint32
	cachedCons uint32
}

// initRing points r at a ring of size entries inside mem. mem must stay
// mapped for the life of r and be 8-byte aligned at off.desc.
func (r *ring) init(mem []byte, off ringOffsets, size uint32) {
	r.producer = (*uint32)(unsafe.Pointer(&mem[off.producer]))
	r.consumer = (*uint32)(unsafe.Pointer(&mem[off.consumer]))
	r.flags = (*uint32)(unsafe.Pointer(&mem[off.flags]))
	r.size = size
	r.mask = size - 1
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
}

// needWakeup reports whether the kernel set XDP_RING_NEED_WAKEUP on the ring.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}

// reserve returns the index of the first of up to n free slots on a ring this
// side produces, and how many it got. It reads the kernel's consumer index
// only when the cached one does not show n free slots.
func (r *ring) reserve(n uint32) (idx, got uint32) {
	free := r.size - (r.cachedProd - r.cachedCons)
	if free < n {
		r.cachedCons = atomic.LoadUint32(r.consumer)
		free = r.size - (r.cachedProd - r.cachedCons)
	}
	return r.cachedProd, min(free, n)
}

// submit publishes n slots filled after reserve.
func (r *ring) submit(n uint32) {
	r.cachedProd += n
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// peek returns the index of the first of up to n entries ready on a ring this
// side consumes, and how many are ready. It reads the kernel's producer index
// only when the cached one does not show n entries.
func (r *ring) peek(n uint32) (idx, got uint32) {
	avail := r.cachedProd - r.cachedCons
	if avail < n {
		r.cachedProd = atomic.LoadUint32(r.producer)
		avail = r.cachedProd - r.cachedCons
	}
	return r.cachedCons, min(avail, n)
}

// release hands n consumed entries back to the kernel.
func (r *ring) release(n uint32) {
	r.cachedCons += n
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// addrRing is a fill or completion ring: entries are UMEM addresses.
type addrRing struct {
	ring
	addrs []uint64
}

func (r *addrRing) init(mem []byte, off ringOffsets, size uint32) {
	r.ring.init(mem, off, size)
	r.addrs = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.desc])), size)
}

// descRing is an rx or tx ring: entries are descriptors.
type descRing struct {
	ring
	descs []Desc
}

func (r *descRing) init(mem []byte, off ringOffsets, size uint32) {
	r.ring.init(mem, off, size)
	r.descs = unsafe.Slice((*Desc)(unsafe.Pointer(&mem[off.desc])), size)
}

// put copies up to len(descs) descriptors into a ring this side produces and
// publishes them at once. It returns how many went in.
func (r *descRing) put(descs []Desc) int {
	idx, n := r.reserve(uint32(len(descs)))
	for i := range n {
		r.descs[(idx+i)&r.mask] = descs[i]
	}
	if n > 0 {
		r.submit(n)
	}
	return int(n)
}

// get copies up to len(descs) descriptors out of a ring this side consumes and
// releases their slots at once. It returns how many it got.
func (r *descRing) get(descs []Desc) int {
	idx, n := r.peek(uint32(len(descs)))
	for i := range n {
		descs[i] = r.descs[(idx+i)&r.mask]
	}
	if n > 0 {
		r.release(n)
	}
	return int(n)
}

const xdpRingNeedWakeup = 1 // XDP_RING_NEED_WAKEUP
