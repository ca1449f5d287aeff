package connsync

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"time"
)

// sendLoop drains the workers' rings every Interval and sends their records in messages of
// at most MaxMessage bytes to every peer, one sendmmsg(2) per tick for all of them, until
// ctx ends.
func (n *Node) sendLoop(ctx context.Context, pc *net.UDPConn) {
	// On a thread of its own, so that its CPU time (kernel time of the sends included) can
	// be read: Stats.SenderCPU.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sealer, _ := NewSealer(n.cfg.Key) // New checked the key
	per := min((n.cfg.MaxMessage-Size(0))/RecordSize, MaxRecords)
	recs := make([]Record, per)
	dst := n.cfg.Peers
	if n.cfg.Group.IsValid() {
		dst = append(slices.Clone(dst), netip.AddrPortFrom(n.cfg.Group, n.cfg.Listen.Port()))
	}
	w := newBatchWriter(pc, dst)
	tick := time.NewTicker(n.cfg.Interval)
	defer tick.Stop()
	var seq uint64
	prev := time.Now()
	seal := func(recs []Record) {
		seq++
		h := Header{Count: len(recs), Sender: n.sender, Seq: seq, Sent: time.Now().UnixNano(), Oldest: prev.UnixNano()}
		w.add(func(buf []byte) []byte { return sealer.Seal(buf, &h, recs) }, Size(len(recs)), len(recs))
		n.send.msgs.Add(1)
		n.send.records.Add(uint64(len(recs)))
		var kinds [NumKinds]uint64
		for i := range recs {
			kinds[min(recs[i].Kind, NumKinds-1)]++
		}
		for k, c := range kinds {
			n.send.kinds[k].Add(c)
		}
	}
	var rings []*Ring
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		n.mu.Lock()
		rings = append(rings[:0], n.rings...)
		n.mu.Unlock()
		fill := 0
		for _, q := range rings {
			for {
				k := q.Pop(recs[fill:])
				if fill += k; fill == per {
					seal(recs)
					fill = 0
					continue
				}
				break
			}
		}
		if fill > 0 {
			seal(recs[:fill])
		}
		sent, failed := w.flush()
		n.send.bytes.Add(sent)
		n.dropped[DropSendError].Add(failed)
		n.sendCPU.Store(int64(threadCPU()))
		prev = now
	}
}

// receive reads messages until pc is closed (up to 64 per recvmmsg(2)) and applies the ones
// that pass every check.
func (n *Node) receive(pc *net.UDPConn) {
	runtime.LockOSThread() // see sendLoop: Stats.ReceiverCPU
	defer runtime.UnlockOSThread()
	sealer, _ := NewSealer(n.cfg.Key)
	recs := make([]Record, MaxRecords)
	var guard replayGuard
	br := newBatchReader(pc, n.cfg.MaxMessage+1) // a longer datagram arrives cut: oversized
	for {
		k, err := br.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		for i := range k {
			n.recv.msgs.Add(1)
			n.apply(sealer, &guard, br.msg(i), recs, now)
		}
		n.recvCPU.Store(int64(threadCPU()))
	}
}

// apply checks message b received at now and writes its records to the table; it returns
// the drop reason, or -1 when the message was applied.
func (n *Node) apply(s *Sealer, g *replayGuard, b []byte, recs []Record, now time.Time) int {
	var h Header
	raw, err := s.Open(b, n.cfg.MaxMessage, &h)
	if err != nil {
		return n.drop(err)
	}
	if d := now.Sub(time.Unix(0, h.Sent)); d > n.cfg.MaxSkew || d < -n.cfg.MaxSkew {
		return n.drop(ErrStale)
	}
	unknown := 0
	for i := range h.Count {
		switch err := ParseRecord(raw, i, &recs[i]); {
		case errors.Is(err, ErrKind):
			recs[i].Kind = NumKinds // a newer peer's kind: skipped below, counted
			unknown++
		case err != nil:
			return n.drop(ErrRecord) // an authenticated peer with another idea of the format: none of it
		}
	}
	if h.Sender == n.sender {
		return -1 // our own message, looped back: nothing to learn
	}
	ok, gap := g.check(h.Sender, h.Seq)
	if !ok {
		return n.drop(ErrReplay)
	}
	n.recv.lost.Add(gap)
	n.recv.records.Add(uint64(h.Count))
	n.dropped[DropKind].Add(uint64(unknown))
	var kinds [NumKinds]uint64
	for i := range h.Count {
		if k := recs[i].Kind; k < NumKinds && n.table.Apply(&recs[i], h.Sender) {
			kinds[k]++
		}
	}
	for k, c := range kinds {
		n.recv.kinds[k].Add(c)
		n.recv.applied.Add(c)
	}
	lag := int64(now.Sub(time.Unix(0, h.Oldest)))
	n.lagLast.Store(lag)
	if lag > n.lagMax.Load() {
		n.lagMax.Store(lag)
	}
	return -1
}

func (n *Node) drop(err error) int {
	for i, e := range dropErrs {
		if errors.Is(err, e) {
			n.dropped[i].Add(1)
			return i
		}
	}
	return DropRecord
}

// Stats returns the node's counters. Safe for concurrent use.
func (n *Node) Stats() Stats {
	s := Stats{Sender: n.sender, SentMessages: n.send.msgs.Load(), SentRecords: n.send.records.Load(),
		SentBytes: n.send.bytes.Load(), Received: n.recv.msgs.Load(), ReceivedRecords: n.recv.records.Load(),
		Applied: n.recv.applied.Load(), Lost: n.recv.lost.Load(), LagLast: time.Duration(n.lagLast.Load()),
		LagMax: time.Duration(n.lagMax.Load()), Table: n.table.Stats(),
		SenderCPU: time.Duration(n.sendCPU.Load()), ReceiverCPU: time.Duration(n.recvCPU.Load())}
	for i := range s.Dropped {
		s.Dropped[i] = n.dropped[i].Load()
	}
	for k := range NumKinds {
		s.SentKinds[k], s.AppliedKinds[k] = n.send.kinds[k].Load(), n.recv.kinds[k].Load()
	}
	n.mu.Lock()
	for _, q := range n.rings {
		s.Dropped[DropRingFull] += q.Drops()
	}
	n.mu.Unlock()
	for _, p := range n.cfg.Peers {
		s.Peers = append(s.Peers, p.String())
	}
	slices.Sort(s.Peers)
	if n.cfg.Group.IsValid() {
		s.Peers = append(s.Peers, netip.AddrPortFrom(n.cfg.Group, n.cfg.Listen.Port()).String()+"%"+n.cfg.Interface)
	}
	if n.cfg.Listen.IsValid() {
		s.Listen = n.cfg.Listen.String()
	}
	return s
}
