package xsk

import (
	"math/rand/v2"
	"testing"
)

// fakeSocket is a Socket whose rings are fake kernel rings on plain memory and
// whose fd is invalid, so a kick is counted as a failed one.
type fakeSocket struct {
	s                  *Socket
	fill, comp, rx, tx *fakeRing
}

func newFakeSocket(t testing.TB, u *UMEM, size uint32) *fakeSocket {
	t.Helper()
	f := &fakeSocket{
		fill: newFakeRing(size, 8, 7),
		comp: newFakeRing(size, 8, ^uint32(0)-5),
		rx:   newFakeRing(size, 16, ^uint32(0)),
		tx:   newFakeRing(size, 16, 1<<31),
	}
	s := &Socket{fd: -1, umem: u}
	s.fill = *f.fill.addrRing()
	s.comp = *f.comp.addrRing()
	s.rx = *f.rx.descRing()
	s.tx = *f.tx.descRing()
	f.s = s
	return f
}

func newTestUMEM(t testing.TB, frames int) *UMEM {
	t.Helper()
	u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: frames})
	if err != nil {
		t.Fatalf("NewUMEM: %v", err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestUMEMFrameStack(t *testing.T) {
	u := newTestUMEM(t, 4)
	if u.RxOffset() != 256 || u.FrameSize() != 2048 || u.FreeFrames() != 4 {
		t.Fatalf("rx offset %d, frame size %d, free %d", u.RxOffset(), u.FrameSize(), u.FreeFrames())
	}
	seen := map[uint64]bool{}
	for range 4 {
		a, ok := u.Alloc()
		if !ok || a%2048 != 0 || a >= 4*2048 || seen[a] {
			t.Fatalf("Alloc = %d, %v (seen %v)", a, ok, seen)
		}
		seen[a] = true
	}
	if _, ok := u.Alloc(); ok {
		t.Fatal("Alloc from an empty stack succeeded")
	}
	if !u.Free(2048 + 300) {
		t.Fatal("Free of an allocated frame (mid-frame address) refused")
	}
	if u.Free(2048) {
		t.Fatal("double Free accepted")
	}
	if u.Free(4 * 2048) {
		t.Fatal("Free outside the UMEM accepted")
	}
	if a, _ := u.Alloc(); a != 2048 {
		t.Fatalf("Alloc after Free = %d, want the freed frame base 2048", a)
	}
	fr := u.Frame(3*2048 + 256)
	if len(fr) != 2048 || &fr[0] != &u.mem[3*2048] || u.Offset(3*2048+256) != 256 {
		t.Fatal("Frame/Offset do not locate the frame")
	}
	if _, err := NewUMEM(UMEMConfig{FrameSize: 1024}); err == nil {
		t.Fatal("frame size 1024 accepted")
	}
	if _, err := NewUMEM(UMEMConfig{FrameSize: 2048, Headroom: 400}); err == nil {
		t.Fatal("headroom leaving no room for a frame accepted")
	}
}

func TestKickOnlyWhenAsked(t *testing.T) {
	u := newTestUMEM(t, 64)
	f := newFakeSocket(t, u, 16)
	s := f.s
	d := []Desc{{Addr: 256, Len: 60}}
	if n := s.Transmit(d); n != 1 || s.counters.TxKicks != 0 {
		t.Fatalf("no need_wakeup: sent %d, kicks %d", n, s.counters.TxKicks)
	}
	f.tx.setFlags(xdpRingNeedWakeup)
	if n := s.Transmit(d); n != 1 || s.counters.TxKicks != 1 || s.counters.TxKickErrors != 1 {
		t.Fatalf("need_wakeup: sent %d, kicks %d errors %d", n, s.counters.TxKicks, s.counters.TxKickErrors)
	}
	f.tx.consumeDescs(16)
	s.Kick() // the kernel took everything: nothing to kick
	if s.counters.TxKicks != 1 {
		t.Fatalf("Kick with an empty tx ring kicked")
	}
	buf := make([]Desc, 8)
	if n := s.Receive(buf); n != 0 || s.counters.RxWakeups != 0 {
		t.Fatalf("empty rx without need_wakeup: %d, wakeups %d", n, s.counters.RxWakeups)
	}
	f.fill.setFlags(xdpRingNeedWakeup)
	if s.Receive(buf); s.counters.RxWakeups != 1 {
		t.Fatalf("empty rx with need_wakeup on the fill ring: wakeups %d", s.counters.RxWakeups)
	}
}

// TestFrameConservation runs a fake kernel and the socket's batch API for
// many rounds: the kernel receives into filled frames, user space forwards
// some and drops the rest, the kernel completes transmissions. No frame is
// lost or duplicated.
func TestFrameConservation(t *testing.T) {
	const frames = 64
	u := newTestUMEM(t, frames)
	f := newFakeSocket(t, u, 32)
	s := f.s
	rng := rand.New(rand.NewPCG(3, 4))
	var kernelFree []uint64 // frames the kernel took from the fill ring
	batch := make([]Desc, 16)
	for round := range 3000 {
		s.Fill(rng.IntN(40) - 4) // negative: as many as fit
		kernelFree = append(kernelFree, f.fill.consumeAddrs(rng.IntN(20))...)
		// The kernel receives into some of its frames.
		k := rng.IntN(len(kernelFree) + 1)
		in := make([]Desc, k)
		for i := range in {
			in[i] = Desc{Addr: kernelFree[i] + 256, Len: 60 + uint32(round%100)}
		}
		n := f.rx.produceDescs(in)
		kernelFree = kernelFree[n:]
		got := s.Receive(batch[:rng.IntN(len(batch)+1)])
		tx := batch[:0]
		for _, d := range batch[:got] {
			if u.Offset(d.Addr) != 256 {
				t.Fatalf("rx offset %d", u.Offset(d.Addr))
			}
			if rng.IntN(3) == 0 {
				if !u.Free(d.Addr) {
					t.Fatalf("received frame %d was already free", d.Addr)
				}
			} else {
				tx = append(tx, d)
			}
		}
		sent := s.Transmit(tx)
		for _, d := range tx[sent:] {
			u.Free(d.Addr)
		}
		done := f.tx.consumeDescs(rng.IntN(20))
		addrs := make([]uint64, len(done))
		for i, d := range done {
			addrs[i] = d.Addr
		}
		if c := f.comp.produceAddrs(addrs); c != len(addrs) {
			t.Fatalf("completion ring overflow in the fake kernel")
		}
		s.Complete()
		// Every frame is in exactly one place.
		inFill := int(f.fill.prod() - f.fill.cons())
		inRx := int(f.rx.prod() - f.rx.cons())
		inTx := int(f.tx.prod() - f.tx.cons())
		inComp := int(f.comp.prod() - f.comp.cons())
		total := u.FreeFrames() + inFill + len(kernelFree) + inRx + inTx + inComp
		if total != frames {
			t.Fatalf("round %d: free %d + fill %d + kernel %d + rx %d + tx %d + comp %d = %d, want %d",
				round, u.FreeFrames(), inFill, len(kernelFree), inRx, inTx, inComp, total, frames)
		}
		if s.InFlight() != inTx {
			t.Fatalf("round %d: in flight %d, tx ring %d", round, s.InFlight(), inTx)
		}
	}
}

func TestBatchPathAllocatesNothing(t *testing.T) {
	u := newTestUMEM(t, 256)
	f := newFakeSocket(t, u, 64)
	s := f.s
	batch := make([]Desc, 32)
	kin := make([]Desc, 32)
	kaddrs := make([]uint64, 64)
	allocs := testing.AllocsPerRun(100, func() {
		s.Fill(-1)
		// Fake kernel, without allocating: move 32 filled frames to rx.
		p, c := f.fill.prod(), f.fill.cons()
		n := min(p-c, 32)
		for i := range n {
			kin[i] = Desc{Addr: s.fill.addrs[(c+i)&s.fill.mask] + 256, Len: 64}
		}
		f.fill.setCons(c + n)
		f.rx.produceDescs(kin[:n])
		got := s.Receive(batch)
		sent := s.Transmit(batch[:got])
		tp, tc := f.tx.prod(), f.tx.cons()
		m := 0
		for i := tc; i != tp; i++ {
			kaddrs[m] = s.tx.descs[i&s.tx.mask].Addr
			m++
		}
		f.tx.setCons(tp)
		f.comp.produceAddrs(kaddrs[:m])
		s.Complete()
		_ = sent
	})
	if allocs != 0 {
		t.Fatalf("batch path allocates %v per run", allocs)
	}
	if u.FreeFrames()+int(f.fill.prod()-f.fill.cons()) != 256 {
		t.Fatalf("frames lost: free %d", u.FreeFrames())
	}
}
