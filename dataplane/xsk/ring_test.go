package xsk

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"
)

// fakeRing is the kernel's side of one ring on plain memory. It reads and
// writes entries with encoding/binary, independently of the unsafe views of
// the code under test.
type fakeRing struct {
	mem   []byte
	size  uint32
	entry int // 8 (addresses) or 16 (descriptors)
}

var fakeOffsets = ringOffsets{producer: 0, consumer: 64, flags: 128, desc: 192}

func newFakeRing(size uint32, entry int, start uint32) *fakeRing {
	f := &fakeRing{mem: make([]byte, 192+int(size)*entry), size: size, entry: entry}
	f.setProd(start)
	f.setCons(start)
	return f
}

func (f *fakeRing) word(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&f.mem[off])) }
func (f *fakeRing) prod() uint32            { return atomic.LoadUint32(f.word(fakeOffsets.producer)) }
func (f *fakeRing) cons() uint32            { return atomic.LoadUint32(f.word(fakeOffsets.consumer)) }
func (f *fakeRing) setProd(v uint32)        { atomic.StoreUint32(f.word(fakeOffsets.producer), v) }
func (f *fakeRing) setCons(v uint32)        { atomic.StoreUint32(f.word(fakeOffsets.consumer), v) }
func (f *fakeRing) setFlags(v uint32)       { atomic.StoreUint32(f.word(fakeOffsets.flags), v) }
func (f *fakeRing) slot(i uint32) []byte {
	off := 192 + int(i&(f.size-1))*f.entry
	return f.mem[off : off+f.entry]
}

// produceDescs is the kernel filling an rx ring: it writes as many of ds as
// fit and returns how many.
func (f *fakeRing) produceDescs(ds []Desc) int {
	p, c := f.prod(), f.cons()
	n := min(uint32(len(ds)), f.size-(p-c))
	for i := range n {
		s := f.slot(p + i)
		binary.LittleEndian.PutUint64(s[0:], ds[i].Addr)
		binary.LittleEndian.PutUint32(s[8:], ds[i].Len)
		binary.LittleEndian.PutUint32(s[12:], ds[i].Options)
	}
	f.setProd(p + n)
	return int(n)
}

// consumeDescs is the kernel taking up to max descriptors off a tx ring.
func (f *fakeRing) consumeDescs(max int) []Desc {
	p, c := f.prod(), f.cons()
	n := min(uint32(max), p-c)
	out := make([]Desc, n)
	for i := range n {
		s := f.slot(c + i)
		out[i] = Desc{binary.LittleEndian.Uint64(s[0:]), binary.LittleEndian.Uint32(s[8:]), binary.LittleEndian.Uint32(s[12:])}
	}
	f.setCons(c + n)
	return out
}

func (f *fakeRing) produceAddrs(as []uint64) int {
	p, c := f.prod(), f.cons()
	n := min(uint32(len(as)), f.size-(p-c))
	for i := range n {
		binary.LittleEndian.PutUint64(f.slot(p+i), as[i])
	}
	f.setProd(p + n)
	return int(n)
}

func (f *fakeRing) consumeAddrs(max int) []uint64 {
	p, c := f.prod(), f.cons()
	n := min(uint32(max), p-c)
	out := make([]uint64, n)
	for i := range n {
		out[i] = binary.LittleEndian.Uint64(f.slot(c + i))
	}
	f.setCons(c + n)
	return out
}

func (f *fakeRing) descRing() *descRing {
	r := new(descRing)
	r.init(f.mem, fakeOffsets, f.size)
	return r
}

func (f *fakeRing) addrRing() *addrRing {
	r := new(addrRing)
	r.init(f.mem, fakeOffsets, f.size)
	return r
}

func TestRxEmptyBatchesAndWrap(t *testing.T) {
	// Start just below the uint32 wrap so the indexes wrap mid-test.
	f := newFakeRing(8, 16, ^uint32(0)-2)
	rx := f.descRing()
	buf := make([]Desc, 4)
	if n := rx.get(buf); n != 0 {
		t.Fatalf("empty ring: got %d descriptors", n)
	}
	next := uint64(0)
	want := uint64(0)
	for round := range 50 {
		in := make([]Desc, 1+round%9)
		for i := range in {
			in[i] = Desc{Addr: next, Len: uint32(next % 1500), Options: uint32(round)}
			next++
		}
		got := f.produceDescs(in)
		next -= uint64(len(in) - got)
		for {
			n := rx.get(buf)
			if n == 0 {
				break
			}
			if n > len(buf) {
				t.Fatalf("get returned %d > batch %d", n, len(buf))
			}
			for _, d := range buf[:n] {
				if d.Addr != want || d.Len != uint32(want%1500) {
					t.Fatalf("round %d: got %+v, want addr %d", round, d, want)
				}
				want++
			}
		}
		if f.cons() != f.prod() {
			t.Fatalf("round %d: consumer %d != producer %d after draining", round, f.cons(), f.prod())
		}
	}
	if want != next || f.prod() != ^uint32(0)-2+uint32(next) || f.prod() > ^uint32(0)-2 {
		t.Fatalf("consumed %d of %d; producer %d (expected to have wrapped)", want, next, f.prod())
	}
}

func TestTxFullAndCachedConsumer(t *testing.T) {
	f := newFakeRing(8, 16, ^uint32(0)-4)
	tx := f.descRing()
	in := make([]Desc, 10)
	for i := range in {
		in[i] = Desc{Addr: uint64(i) * 4096, Len: 60}
	}
	if n := tx.put(in); n != 8 {
		t.Fatalf("put 10 into an empty ring of 8: %d", n)
	}
	if n := tx.put(in[8:]); n != 0 {
		t.Fatalf("put into a full ring: %d", n)
	}
	if p := f.prod() - f.cons(); p != 8 {
		t.Fatalf("kernel sees %d entries, want 8", p)
	}
	got := f.consumeDescs(3)
	for i, d := range got {
		if d != in[i] {
			t.Fatalf("kernel read %+v at %d, want %+v", d, i, in[i])
		}
	}
	// A reservation the cached consumer can satisfy must not re-read it...
	before := tx.cachedCons
	if _, n := tx.reserve(0); n != 0 || tx.cachedCons != before {
		t.Fatalf("reserve(0) refreshed the cached consumer")
	}
	// ...one it cannot satisfy re-reads it and sees the 3 free slots.
	if n := tx.put(in[8:10]); n != 2 {
		t.Fatalf("put 2 after the kernel freed 3: %d", n)
	}
	if tx.cachedCons != f.cons() {
		t.Fatalf("cached consumer %d, kernel's %d", tx.cachedCons, f.cons())
	}
	if n := tx.put(in[:5]); n != 1 {
		t.Fatalf("put 5 with 1 slot free: %d", n)
	}
	rest := f.consumeDescs(100)
	wantAddrs := []uint64{3, 4, 5, 6, 7, 8, 9, 0}
	if len(rest) != len(wantAddrs) {
		t.Fatalf("kernel read %d, want %d", len(rest), len(wantAddrs))
	}
	for i, d := range rest {
		if d.Addr != wantAddrs[i]*4096 {
			t.Fatalf("entry %d: addr %d, want %d", i, d.Addr, wantAddrs[i]*4096)
		}
	}
}

func TestConsumerCachedProducer(t *testing.T) {
	f := newFakeRing(16, 8, 0)
	c := f.addrRing()
	f.produceAddrs([]uint64{1, 2, 3, 4})
	if _, n := c.peek(2); n != 2 || c.cachedProd != 4 {
		t.Fatalf("peek 2: got %d, cached producer %d", n, c.cachedProd)
	}
	c.release(2)
	f.produceAddrs([]uint64{5, 6})
	// Two entries are cached: peek(2) must not look at the producer.
	if _, n := c.peek(2); n != 2 || c.cachedProd != 4 {
		t.Fatalf("peek within the cache: got %d, cached producer %d", n, c.cachedProd)
	}
	// Asking for more refreshes.
	idx, n := c.peek(16)
	if n != 4 || c.cachedProd != 6 {
		t.Fatalf("peek past the cache: got %d, cached producer %d", n, c.cachedProd)
	}
	for i := range n {
		if a := c.addrs[(idx+i)&c.mask]; a != uint64(3+i) {
			t.Fatalf("entry %d = %d", i, a)
		}
	}
	c.release(n)
	if f.cons() != 6 {
		t.Fatalf("kernel sees consumer %d, want 6", f.cons())
	}
}

// TestRandomAgainstModel drives producer and consumer rings with random batch
// sizes against a reference FIFO, from a start near the wrap.
func TestRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []uint32{1, 2, 8, 64} {
		f := newFakeRing(size, 16, ^uint32(0)-uint32(rng.IntN(100)))
		tx := f.descRing()
		var model []uint64
		next := uint64(0)
		for range 5000 {
			if rng.IntN(2) == 0 {
				in := make([]Desc, rng.IntN(int(size)*2+1))
				for i := range in {
					in[i].Addr = next + uint64(i)
				}
				n := tx.put(in)
				free := int(size) - len(model)
				if n != min(len(in), free) {
					t.Fatalf("size %d: put %d with %d free returned %d", size, len(in), free, n)
				}
				for i := range n {
					model = append(model, next+uint64(i))
				}
				next += uint64(n)
			} else {
				got := f.consumeDescs(rng.IntN(int(size) + 2))
				for i, d := range got {
					if d.Addr != model[i] {
						t.Fatalf("size %d: kernel read %d, want %d", size, d.Addr, model[i])
					}
				}
				model = model[len(got):]
			}
		}
	}
}
