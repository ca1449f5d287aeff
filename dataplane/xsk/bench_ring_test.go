package xsk

import "testing"

// BenchmarkRingLoop measures the ring code alone on plain memory: per
// operation, one batch of 64 frames goes Fill -> (fake kernel: fill to rx)
// -> Receive -> Transmit -> (fake kernel: tx to completion) -> Complete, the
// l2fwd shape without the kernel. The fake kernel's side is included (it is
// the same kind of index work), so this is an upper bound of the user-space
// ring cost per packet.
func BenchmarkRingLoop(b *testing.B) {
	u := newTestUMEM(b, 4096)
	f := newFakeSocket(b, u, 2048)
	s := f.s
	var batch [batchN]Desc
	var kin [batchN]Desc
	b.ReportAllocs()
	pkts := 0
	for b.Loop() {
		s.Fill(batchN)
		c := f.fill.cons()
		n := min(f.fill.prod()-c, batchN)
		for i := range n {
			kin[i] = Desc{Addr: s.fill.addrs[(c+i)&s.fill.mask] + 256, Len: 60}
		}
		f.fill.setCons(c + n)
		f.rx.produceDescs(kin[:n])
		got := s.Receive(batch[:])
		sent := s.Transmit(batch[:got])
		pkts += sent
		tc, tp := f.tx.cons(), f.tx.prod()
		cp := f.comp.prod()
		for i := tc; i != tp; i++ {
			s.comp.addrs[cp&s.comp.mask] = s.tx.descs[i&s.tx.mask].Addr
			cp++
		}
		f.tx.setCons(tp)
		f.comp.setProd(cp)
		s.Complete()
	}
	if pkts == 0 {
		b.Fatal("no packets moved")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
}
