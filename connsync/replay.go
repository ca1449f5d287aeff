package connsync

// windowBits is how far behind the highest sequence number seen a message may arrive (out
// of order) and still be accepted once.
const windowBits = 64

// maxSenders bounds the senders the replay guard remembers; the one heard from longest ago
// is forgotten first. A forgotten sender's old messages are still refused by the
// timestamp check (Config.MaxSkew).
const maxSenders = 64

// window is one sender's sliding window: the highest sequence number accepted and a bitmap
// of the windowBits numbers below and including it (bit 0 = top).
type window struct {
	sender uint64
	top    uint64
	bits   uint64
	used   uint64 // when it was last used (the guard's own counter), for eviction
}

// replayGuard accepts each (sender, sequence number) once. Not safe for concurrent use
// (the receiver goroutine owns it).
type replayGuard struct {
	w     []window
	clock uint64
}

// check reports whether seq from sender is new (and records it), and how many sequence
// numbers were skipped since the highest one (lost messages, or ones still to come out of
// order).
func (g *replayGuard) check(sender, seq uint64) (ok bool, gap uint64) {
	g.clock++
	w := g.find(sender)
	if w == nil {
		w = g.add(sender)
		w.top, w.bits, w.used = seq, 1, g.clock
		return true, 0
	}
	w.used = g.clock
	switch {
	case seq > w.top:
		d := seq - w.top
		gap = d - 1
		if d >= windowBits {
			w.bits = 1
		} else {
			w.bits = w.bits<<d | 1
		}
		w.top = seq
		return true, gap
	case w.top-seq >= windowBits:
		return false, 0
	default:
		bit := uint64(1) << (w.top - seq)
		if w.bits&bit != 0 {
			return false, 0
		}
		w.bits |= bit
		return true, 0
	}
}

func (g *replayGuard) find(sender uint64) *window {
	for i := range g.w {
		if g.w[i].sender == sender {
			return &g.w[i]
		}
	}
	return nil
}

func (g *replayGuard) add(sender uint64) *window {
	if len(g.w) < maxSenders {
		g.w = append(g.w, window{sender: sender})
		return &g.w[len(g.w)-1]
	}
	old := 0
	for i := range g.w {
		if g.w[i].used < g.w[old].used {
			old = i
		}
	}
	g.w[old] = window{sender: sender}
	return &g.w[old]
}
