package dataplane

import (
	"sync/atomic"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// Drop is why the data path (rather than the parser or a rewrite, see encap.Reason) dropped a
// frame. Drops are small consecutive integers, so a worker counts them in an array.
type Drop uint8

const (
	// DropNoService: the packet matched no service and no nat backend (a frame the XDP
	// program steered under an older snapshot).
	DropNoService Drop = iota
	// DropNoBackend: the scheduler found no backend that is up.
	DropNoBackend
	// DropNoRoute: the backend's next hop is not resolved, or no route leads to the client.
	DropNoRoute
	// DropNoEgress: the egress interface is not served by this dataplane.
	DropNoEgress
	// DropTxFull: the transmit ring (or the egress socket's free frames) ran out.
	DropTxFull
	// DropNotForwardable: a packet xlb must not forward (an ICMP error about a reply, a
	// non-IP protocol on a service, ...).
	DropNotForwardable

	// NumDrops is the number of Drop values.
	NumDrops
)

var dropNames = [NumDrops]string{
	DropNoService:      "no_service",
	DropNoBackend:      "no_backend",
	DropNoRoute:        "no_route",
	DropNoEgress:       "no_egress",
	DropTxFull:         "tx_full",
	DropNotForwardable: "not_forwardable",
}

// String returns a short snake_case name, usable as a metric label.
func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "unknown_drop"
}

// Counter indexes into a worker's counter block. The block is a flat array so the hot path
// bumps plain memory and a batch publishes it with one atomic store per word.
const (
	cRxPackets = iota
	cRxBytes
	cTxPackets
	cTxBytes
	cICMPReplies
	cNATReturns
	cBatches
	cKicks
	cFillShort
	cTxRingFull
	cCopied
	cToKernel
	cQUICRouted
	cQUICFallback
	cReason0                                       // encap.Reason counters start here
	cDrop0      = cReason0 + int(encap.NumReasons) // Drop counters start here
	numCounters = cDrop0 + int(NumDrops)
)

type counters [numCounters]uint64

// publish copies c into the shared block dst, one atomic store per word, so a reader never
// sees a torn word (a reader may see words of two consecutive batches: each is monotonic).
func (c *counters) publish(dst *counters) {
	publishWords(dst[:], c[:]) // only the counters that changed: most stand still
}

func (c *counters) load() counters {
	var out counters
	for i := range c {
		out[i] = atomic.LoadUint64(&c[i])
	}
	return out
}

// Counters are the totals of one worker (or of several, added up).
type Counters struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// ICMPReplies counts frames turned into ICMP "fragmentation needed" / "packet too big"
	// and sent back to the client.
	ICMPReplies uint64
	// NATReturns counts nat replies translated back to the VIP.
	NATReturns uint64
	// ToKernel counts NAT replies (in NATReturns too) handed to the host's kernel to route
	// because the snapshot had no resolved route to their client yet; those the kernel
	// refused, or over the per-batch budget, are dropped as no_route.
	ToKernel uint64
	// QUICRouted counts packets of QUIC services forwarded to the backend whose server ID
	// their destination connection ID carries; QUICFallback those that took the 4-tuple path
	// instead (no QUIC header, an ID of another configuration or of no backend, or a backend
	// that is down).
	QUICRouted, QUICFallback uint64
	// Connection table, as the worker's sched.Core reports it: live entries, packets of
	// known flows, packets of new flows, entries evicted by a new flow, idle entries
	// expired, flows moved off a backend that went down, new flows of a service at its
	// table share forwarded without an entry (sched.ServiceConfig.TableShare).
	ConnEntries, ConnHits, ConnMisses, ConnEvictions, ConnExpirations, ConnRescheduled uint64
	ConnOverQuota                                                                      uint64
	// New flows of persistent services sent to their client's remembered backend, and
	// packets of one-packet services (scheduled without an entry).
	ConnPersisted, ConnOnePacket uint64
	// Rings: batches processed, wakeup kicks (sendto/poll), refills that found fewer free
	// frames than the fill ring had room for, transmit attempts that found the ring full,
	// frames copied into another interface's socket.
	Batches, Kicks, FillShort, TxRingFull, Copied uint64
	// Reasons counts parse and rewrite outcomes other than OK, by encap.Reason (ReplyICMP is
	// also in ICMPReplies).
	Reasons [encap.NumReasons]uint64
	// Drops counts frames dropped by the data path, by Drop.
	Drops [NumDrops]uint64
	// Kernel is the socket's XDP_STATISTICS (dropped and invalid descriptors, full rings).
	Kernel KernelStats
}

// KernelStats mirrors the kernel's struct xdp_statistics for one socket.
type KernelStats struct {
	RxDropped, RxInvalid, TxInvalid, RxRingFull, FillRingEmpty, TxRingEmpty uint64
}

// Dropped returns the total of frames dropped for any reason (malformed, not forwardable, no
// backend, ...), not counting ICMP replies, which are transmitted.
func (c Counters) Dropped() uint64 {
	var n uint64
	for r, v := range c.Reasons {
		if encap.Reason(r).Drop() {
			n += v
		}
	}
	for _, v := range c.Drops {
		n += v
	}
	return n
}

// Add adds o to c.
func (c *Counters) Add(o *Counters) {
	c.RxPackets += o.RxPackets
	c.RxBytes += o.RxBytes
	c.TxPackets += o.TxPackets
	c.TxBytes += o.TxBytes
	c.ICMPReplies += o.ICMPReplies
	c.NATReturns += o.NATReturns
	c.ToKernel += o.ToKernel
	c.QUICRouted += o.QUICRouted
	c.QUICFallback += o.QUICFallback
	c.ConnEntries += o.ConnEntries
	c.ConnHits += o.ConnHits
	c.ConnExpirations += o.ConnExpirations
	c.ConnRescheduled += o.ConnRescheduled
	c.ConnMisses += o.ConnMisses
	c.ConnEvictions += o.ConnEvictions
	c.ConnOverQuota += o.ConnOverQuota
	c.ConnPersisted += o.ConnPersisted
	c.ConnOnePacket += o.ConnOnePacket
	c.Batches += o.Batches
	c.Kicks += o.Kicks
	c.FillShort += o.FillShort
	c.TxRingFull += o.TxRingFull
	c.Copied += o.Copied
	for i := range c.Reasons {
		c.Reasons[i] += o.Reasons[i]
	}
	for i := range c.Drops {
		c.Drops[i] += o.Drops[i]
	}
	c.Kernel.RxDropped += o.Kernel.RxDropped
	c.Kernel.RxInvalid += o.Kernel.RxInvalid
	c.Kernel.TxInvalid += o.Kernel.TxInvalid
	c.Kernel.RxRingFull += o.Kernel.RxRingFull
	c.Kernel.FillRingEmpty += o.Kernel.FillRingEmpty
	c.Kernel.TxRingEmpty += o.Kernel.TxRingEmpty
}

func (c *Counters) addConn(s sched.Stats) {
	c.ConnEntries += s.Entries
	c.ConnHits += s.Hits
	c.ConnMisses += s.Misses
	c.ConnEvictions += s.Evictions
	c.ConnExpirations += s.Expirations
	c.ConnRescheduled += s.Rescheduled
	c.ConnOverQuota += s.OverQuota
	c.ConnPersisted += s.Persisted
	c.ConnOnePacket += s.OnePacket
}

func (c *counters) export() Counters {
	var o Counters
	o.RxPackets, o.RxBytes = c[cRxPackets], c[cRxBytes]
	o.TxPackets, o.TxBytes = c[cTxPackets], c[cTxBytes]
	o.ICMPReplies, o.NATReturns = c[cICMPReplies], c[cNATReturns]
	o.Batches, o.Kicks, o.FillShort = c[cBatches], c[cKicks], c[cFillShort]
	o.TxRingFull, o.Copied, o.ToKernel = c[cTxRingFull], c[cCopied], c[cToKernel]
	o.QUICRouted, o.QUICFallback = c[cQUICRouted], c[cQUICFallback]
	copy(o.Reasons[:], c[cReason0:cDrop0])
	copy(o.Drops[:], c[cDrop0:numCounters])
	return o
}
