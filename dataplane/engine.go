package dataplane

import (
	"fmt"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// maxBatch is the most frames a worker moves per batch.
const maxBatch = 64

// Frame is one packet of a batch. Before Process: Buf is the whole UMEM frame, the packet
// is Buf[Off:Off+Len] and In is the interface it arrived on. After: Out is the interface
// to transmit the frame on (0: dropped, counted), and Off, Len describe the packet to send
// (encapsulation moves Off back into the headroom).
type Frame struct {
	Buf      []byte
	Off, Len int
	In, Out  int
	Addr     uint64 // the frame's UMEM address; the engine does not use it
}

// Engine is the per-worker forwarding logic: parse, service lookup, NAT return, schedule,
// forward. It touches no socket, so it runs on in-memory frames in tests and benchmarks. Not
// safe for concurrent use: one per worker.
type Engine struct {
	core *sched.Core
	last *Snapshot // the snapshot the core was last prepared for
	pkt  encap.Packet
	c    counters
}

// NewEngine returns an engine for worker id whose connection table holds connTableSize
// entries (0: sched.DefaultCapacity).
func NewEngine(id, connTableSize int) (*Engine, error) {
	core, err := sched.NewCore(sched.CoreConfig{ID: id, Capacity: connTableSize})
	if err != nil {
		return nil, fmt.Errorf("connection table: %w", err)
	}
	return &Engine{core: core}, nil
}

// Counters returns the engine's counters, with the connection table's as of the last batch.
// Owner only: a running worker publishes them for other goroutines (see Dataplane.Stats).
func (e *Engine) Counters() Counters {
	o := e.c.export()
	o.addConn(e.core.Stats())
	return o
}

// Process forwards a batch of frames under snapshot s at time now (nanoseconds, read once
// per batch by the caller) and leaves each frame's verdict in its Out. It allocates nothing
// (once the snapshot has been seen) and never panics on packet content.
func (e *Engine) Process(s *Snapshot, frames []Frame, now int64) {
	if s != e.last && s != nil {
		// A new snapshot: lay the core's per-service state out now, not on a packet.
		for i := range s.services {
			e.core.Prepare(s.services[i].spec.Sched)
		}
		e.last = s
	}
	for i := range frames {
		e.forward(s, &frames[i], now)
	}
	e.c[cBatches]++
	e.core.Maintain(now)
}

func (e *Engine) drop(f *Frame, d Drop) {
	f.Out = 0
	e.c[cDrop0+int(d)]++
}

func (e *Engine) reason(f *Frame, r encap.Reason) {
	f.Out = 0
	e.c[cReason0+int(r)]++
}

func (e *Engine) forward(s *Snapshot, f *Frame, now int64) {
	f.Out = 0
	e.c[cRxPackets]++
	e.c[cRxBytes] += uint64(f.Len)
	if f.Off < 0 || f.Len < 0 || f.Off+f.Len > len(f.Buf) {
		e.reason(f, encap.Truncated)
		return
	}
	p := &e.pkt
	pkt := f.Buf[f.Off : f.Off+f.Len]
	if r := encap.Parse(pkt, p); r != encap.OK {
		e.reason(f, r)
		return
	}
	if s == nil {
		e.drop(f, DropNoService)
		return
	}
	k := &p.Key
	si := s.lookup(k)
	if si < 0 {
		if si = s.lookupNAT(k); si >= 0 {
			e.natReturn(s, &s.services[si], f, pkt)
			return
		}
		e.drop(f, DropNoService)
		return
	}
	sv := &s.services[si]
	bi := e.core.Schedule(sv.spec.Sched, (*sched.Key)(k), p.TCPFlags, now)
	if bi < 0 || bi >= len(sv.targets) {
		e.drop(f, DropNoBackend)
		return
	}
	t := &sv.targets[bi]
	if t.hop.IfIndex == 0 {
		e.drop(f, DropNoRoute)
		return
	}
	switch sv.spec.Method {
	case MethodDR:
		e.send(f, pkt, &t.hop)
	case MethodTunnel:
		off, n, r := t.tun.Encap(f.Buf, f.Off, f.Len, p)
		f.Off, f.Len = off, n
		switch r {
		case encap.OK:
			f.Out = t.hop.IfIndex
		case encap.ReplyICMP:
			e.icmpReply(f)
		default:
			e.reason(f, r)
		}
	case MethodNAT:
		if p.TotalLen > t.hop.MTU {
			e.tooBig(f, t.hop.MTU)
			return
		}
		if r := encap.NATToBackend(pkt, p, t.ip, t.port); r != encap.OK {
			e.reason(f, r)
			return
		}
		encap.SetMACs(pkt, t.hop.DstMAC, t.hop.SrcMAC)
		f.Out = t.hop.IfIndex
	}
}

// natReturn translates a reply from a nat backend back to the service and routes it to the
// client.
func (e *Engine) natReturn(s *Snapshot, sv *service, f *Frame, pkt []byte) {
	p := &e.pkt
	hop := s.route(&p.Key.Dst, p.Key.V6)
	if hop == nil || hop.IfIndex == 0 {
		e.drop(f, DropNoRoute)
		return
	}
	if p.TotalLen > hop.MTU {
		e.tooBig(f, hop.MTU)
		return
	}
	if r := encap.NATToClient(pkt, p, sv.vipIP, sv.spec.Port); r != encap.OK {
		e.reason(f, r)
		return
	}
	e.c[cNATReturns]++
	encap.SetMACs(pkt, hop.DstMAC, hop.SrcMAC)
	f.Out = hop.IfIndex
}

// send rewrites the MACs for hop and sends the frame there, or answers "too big".
func (e *Engine) send(f *Frame, pkt []byte, hop *NextHop) {
	if e.pkt.TotalLen > hop.MTU {
		e.tooBig(f, hop.MTU)
		return
	}
	encap.SetMACs(pkt, hop.DstMAC, hop.SrcMAC)
	f.Out = hop.IfIndex
}

func (e *Engine) tooBig(f *Frame, mtu int) {
	off, n, r := encap.ICMPTooBig(f.Buf, f.Off, f.Len, &e.pkt, mtu)
	f.Off, f.Len = off, n
	if r == encap.ReplyICMP {
		e.icmpReply(f)
		return
	}
	e.reason(f, r)
}

// icmpReply sends the frame, now an ICMP error for the sender, back where it came from.
func (e *Engine) icmpReply(f *Frame) {
	e.c[cICMPReplies]++
	e.c[cReason0+int(encap.ReplyICMP)]++
	f.Out = f.In
}
