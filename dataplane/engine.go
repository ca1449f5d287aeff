package dataplane

import (
	"fmt"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// maxBatch is the most frames a worker moves per batch.
const maxBatch = 64

// OutKernel in Frame.Out: the frame is an IP packet (Buf[Off:Off+Len]) for the host's kernel
// to route: a NAT reply, already translated back to the VIP, to a client the snapshot has no
// route to yet (the kernel resolves the client's neighbour entry and queues the packet
// meanwhile, where the data path would have to drop it).
const OutKernel = -1

// Frame is one packet of a batch. Before Process: Buf is the whole UMEM frame, the packet
// is Buf[Off:Off+Len] and In is the interface it arrived on. After: Out is the interface
// to transmit the frame on (0: dropped, counted; OutKernel: hand the IP packet to the
// host's kernel to route), and Off, Len describe the packet to send (encapsulation moves
// Off back into the headroom; for OutKernel they describe the IP packet, without the
// Ethernet header).
type Frame struct {
	Buf      []byte
	Off, Len int
	In, Out  int
	Addr     uint64 // the frame's UMEM address; the engine does not use it
	Why      uint8  // when Out is 0: why it was dropped (read by a capture, see capture.go)
}

// Engine is the per-worker forwarding logic: parse, service lookup, NAT return, schedule,
// forward. It touches no socket, so it runs on in-memory frames in tests and benchmarks. Not
// safe for concurrent use: one per worker.
type Engine struct {
	core *sched.Core
	last *Snapshot // the snapshot the core was last prepared for
	c    counters
	fl   flows // per-service and per-backend counters

	// Per-batch scratch: a batch is parsed, then looked up and hashed (and its
	// connection-table lines asked for, see batch), then every frame is scheduled and
	// forwarded.
	pkts [maxBatch]encap.Packet
	svc  [maxBatch]int32 // per frame: service index, -1 done (dropped or a NAT return)
	slot [maxBatch]int32 // per frame with a service: its index in hs
	hs   [maxBatch]uint64

	// The last service hit, so a run of packets to one service (the common case) costs a
	// key compare instead of a hash and a probe.
	hitSnap *Snapshot
	hitKey  tupleKey
	hitSrc0 bool // the source port was 0 (lookup treats portless keys apart)
	hitSvc  int

	qs encap.QUICScratch // QUIC-LB decoding (routeQUIC)

	activeAt int64 // when refreshActive last ran

	sync engineSync // connection sync (sync.go); off when unset
}

// NewEngine returns an engine for worker id whose connection table holds connTableSize
// entries (0: sched.DefaultCapacity).
func NewEngine(id, connTableSize int) (*Engine, error) {
	return NewEngineCore(sched.CoreConfig{ID: id, Capacity: connTableSize})
}

// NewEngineCore returns an engine whose scheduler core is made with cfg: its ID, table
// size and timeouts, and the persistence table it shares with the other workers.
func NewEngineCore(cfg sched.CoreConfig) (*Engine, error) {
	core, err := sched.NewCore(cfg)
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
		e.fl.relayout(s)
		e.last = s
	}
	for len(frames) > 0 {
		n := min(len(frames), maxBatch)
		e.batch(s, frames[:n], now)
		frames = frames[n:]
	}
	e.c[cBatches]++
	e.core.Maintain(now)
	e.refreshActive(now)
}

// batch processes at most maxBatch frames in three passes. The first parses every frame;
// the second finds every packet's service, hashes its flow key and asks for the connection-table
// header of its first bucket, pipeGroup packets at a time. Then a last pass schedules and
// forwards packet by packet, asking pipeAhead packets ahead for the entries those headers
// point at. So a batch's table misses overlap each other and the work on the packets before
// them, where one pass of header requests, one of entry requests and one of lookups (the
// loop before this one) left each pass's misses with nothing to overlap but each other.
// The first pass is apart from the second so that a packet's key is not read right after
// the parse wrote it: Parse writes the key in pieces (an IPv4 address is 4 bytes beside
// zeroed ones), and a wider load of those bytes before the stores have reached the cache
// cannot be served from the store buffer and waits for them (a store-forwarding stall),
// where a pass later they are plain cache hits.
func (e *Engine) batch(s *Snapshot, frames []Frame, now int64) {
	if len(frames) > maxBatch {
		// Process never passes more; the check tells the compiler that every frame's
		// index is in range of the per-frame arrays, which then need no bounds checks.
		panic("dataplane: a batch of more than maxBatch frames")
	}
	var parsed uint64 // bit i: frame i parsed (maxBatch is 64)
	var bytes uint64
	for i := range frames {
		f := &frames[i]
		bytes += uint64(f.Len)
		f.Out = 0
		// The common frames without parse's and Parse's calls; parse takes the rest and
		// says why it drops one.
		if f.Off >= 0 && f.Len >= 0 && f.Off+f.Len <= len(f.Buf) && encap.ParseCommon(f.Buf[f.Off:f.Off+f.Len], &e.pkts[i]) ||
			e.parse(f, &e.pkts[i]) {
			parsed |= 1 << (i & 63) // i < maxBatch = 64: the mask spares the shift its check for i >= 64
		}
	}
	e.c[cRxPackets] += uint64(len(frames))
	e.c[cRxBytes] += bytes
	m := int32(0)
	for i := range frames {
		e.svc[i] = -1
		if parsed&(1<<i) == 0 {
			continue
		}
		p := &e.pkts[i]
		k, h := &p.Key, &e.hitKey
		si := e.hitSvc
		if s != e.hitSnap || s == nil || k.Dst != h.addr || k.DstPort != h.port || k.Proto != h.proto || k.V6 != h.v6 ||
			(k.SrcPort == 0) != e.hitSrc0 {
			// Not the service of the packet classify found last: classify looks it
			// up (and remembers it).
			if si = e.classify(s, &frames[i], p); si < 0 {
				continue
			}
		}
		if s.quic && s.services[si].quic != nil && e.routeQUIC(si, &s.services[si], &frames[i], p) {
			continue // forwarded by its connection ID
		}
		e.svc[i], e.slot[i] = int32(si), m
		e.hs[m] = e.core.Hash((*sched.Key)(&p.Key))
		m++
		if m%pipeGroup == 0 {
			e.core.PrefetchHeaders(e.hs[m-pipeGroup : m])
		}
	}
	if m == 0 {
		return
	}
	e.core.PrefetchHeaders(e.hs[m-m%pipeGroup : m])
	e.core.PrefetchEntries(e.hs[:min(m, pipeAhead)])
	var sv *service
	last := int32(-1)
	for i := range frames {
		si := e.svc[i]
		if si < 0 {
			continue
		}
		sl := e.slot[i]
		if sl%pipeGroup == 0 && sl+pipeAhead < m {
			e.core.PrefetchEntries(e.hs[sl+pipeAhead : min(m, sl+pipeAhead+pipeGroup)])
		}
		if si != last { // a batch's packets are mostly one service's
			sv, last = &s.services[si], si
			e.sync.cur = sv
		}
		p := &e.pkts[i]
		k := (*sched.Key)(&p.Key)
		bi, isNew := e.core.ScheduleFlow(sv.spec.Sched, k, e.hs[sl], p.TCPFlags, now)
		if e.sync.out != nil && bi >= 0 && bi < len(sv.targets) {
			// What the core noted for sync is about this packet's flow: push it now,
			// before the next packet's Schedule overwrites it.
			e.pushSync(k, &sv.targets[bi])
		}
		e.forward(int(si), sv, &frames[i], p, bi, isNew)
	}
}

// The batch's prefetch pipeline (see batch): table headers are asked for pipeGroup packets
// at a time, and entries pipeGroup at a time, pipeAhead packets before they are scheduled.
// BenchmarkProcess at 64k and 1M flows, 8 ahead against 4, 16 and 32: 4 and 8 alike, 16 no
// better, 32 worse (docs/bench/engine.md).
const (
	pipeGroup = 8
	pipeAhead = 8
)

func (e *Engine) drop(f *Frame, d Drop) {
	f.Out, f.Why = 0, uint8(whyDrop0+int(d))
	e.c[cDrop0+int(d)]++
}

func (e *Engine) reason(f *Frame, r encap.Reason) {
	f.Out, f.Why = 0, uint8(whyReason0+int(r))
	e.c[cReason0+int(r)]++
}

// parse parses the frame into p (batch counts it in). It reports false when it has dropped
// the frame.
func (e *Engine) parse(f *Frame, p *encap.Packet) bool {
	f.Out = 0
	if f.Off < 0 || f.Len < 0 || f.Off+f.Len > len(f.Buf) {
		e.reason(f, encap.Truncated)
		return false
	}
	if r := encap.Parse(f.Buf[f.Off:f.Off+f.Len], p); r != encap.OK {
		e.reason(f, r)
		return false
	}
	return true
}

// classify finds the service of the frame parsed into p, which batch has found not to be
// the service classify found last (hitKey), and remembers it. It returns the service index,
// or -1 when it has dealt with the frame itself: dropped, or a NAT reply translated back.
func (e *Engine) classify(s *Snapshot, f *Frame, p *encap.Packet) int {
	if s == nil {
		e.drop(f, DropNoService)
		return -1
	}
	k := &p.Key
	if si := s.lookup(k); si >= 0 {
		t := tupleKey{addr: k.Dst, port: k.DstPort, proto: k.Proto, v6: k.V6}
		e.hitSnap, e.hitKey, e.hitSrc0, e.hitSvc = s, t, k.SrcPort == 0, si
		return si
	}
	if si, bi := s.lookupNAT(k); si >= 0 {
		e.natReturn(s, si, bi, f, p, f.Buf[f.Off:f.Off+f.Len])
		return -1
	}
	e.drop(f, DropNoService)
	return -1
}

// forward counts the frame and forwards it by sv's method (si is sv's index in the
// snapshot) to the backend at position bi that batch scheduled its flow on, or
// drops it when bi is -1; isNew tells whether the packet started a flow.
func (e *Engine) forward(si int, sv *service, f *Frame, p *encap.Packet, bi int, isNew bool) {
	if bi < 0 || bi >= len(sv.targets) {
		e.fl.noBackend(si, uint64(f.Len))
		e.drop(f, DropNoBackend)
		return
	}
	t := &sv.targets[bi]
	if e.fl.count(t.flow, uint64(f.Len), isNew) {
		e.fl.touchBE(t.flow)
	}
	if t.hop.IfIndex == 0 {
		e.drop(f, DropNoRoute)
		return
	}
	switch sv.spec.Method {
	case MethodDR:
		if p.TotalLen > t.hop.MTU {
			e.tooBig(f, p, t.hop.MTU)
			return
		}
		encap.SetMACs(f.Buf[f.Off:f.Off+f.Len], t.hop.DstMAC, t.hop.SrcMAC)
		f.Out = t.hop.IfIndex
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
			e.tooBig(f, p, t.hop.MTU)
			return
		}
		pkt := f.Buf[f.Off : f.Off+f.Len]
		var r encap.Reason
		if t.v6 {
			r = encap.NATToBackend(pkt, p, t.ip, t.port)
		} else {
			// The backend's 4 bytes, without a netip.Addr (the common case).
			r = encap.NAT4ToBackend(pkt, p, [4]byte(t.addr[:4]), t.port)
		}
		if r != encap.OK {
			e.reason(f, r)
			return
		}
		encap.SetMACs(pkt, t.hop.DstMAC, t.hop.SrcMAC)
		f.Out = t.hop.IfIndex
	}
}

// natReturn translates a reply from a nat backend back to the service and routes it to the
// client.
func (e *Engine) natReturn(s *Snapshot, si, bi int, f *Frame, p *encap.Packet, pkt []byte) {
	sv := &s.services[si]
	n := uint64(f.Len)
	hop := s.route(&p.Key.Dst, p.Key.V6)
	if hop == nil || hop.IfIndex == 0 {
		// No resolved route to the client yet (control adds one when the kernel learns
		// the client's neighbour entry, usually a few ms after the client's first
		// packet): translate the reply and let the kernel route it.
		if r := encap.NATToClient(pkt, p, sv.vipIP, sv.spec.Port); r != encap.OK {
			e.reason(f, r)
			return
		}
		e.c[cNATReturns]++
		e.fl.countOut(si, bi, n)
		e.c[cToKernel]++
		f.Off += p.L3Off
		f.Len = p.IPEnd - p.L3Off
		f.Out = OutKernel
		return
	}
	if p.TotalLen > hop.MTU {
		e.tooBig(f, p, hop.MTU)
		return
	}
	if r := encap.NATToClient(pkt, p, sv.vipIP, sv.spec.Port); r != encap.OK {
		e.reason(f, r)
		return
	}
	e.c[cNATReturns]++
	e.fl.countOut(si, bi, n)
	encap.SetMACs(pkt, hop.DstMAC, hop.SrcMAC)
	f.Out = hop.IfIndex
}

func (e *Engine) tooBig(f *Frame, p *encap.Packet, mtu int) {
	off, n, r := encap.ICMPTooBig(f.Buf, f.Off, f.Len, p, mtu)
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
