package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/encap"
)

// Packet capture from the workers. A capture is armed by storing it in the Dataplane's
// atomic pointer; a worker loads that pointer once per batch and, when it is set, runs the
// batch through Capture.process instead of Engine.Process. process copies the received
// frames that pass the filter into a per-worker staging area, lets the engine forward the
// batch, then writes a record per frame as received and one as sent or as dropped (with the
// reason) into the worker's ring: a single-producer single-consumer ring of fixed-size slots
// allocated when the capture starts. A record that does not fit is counted as lost, never
// waited for. The reader (Capture.Read) takes records off every ring.

// Errors of StartCapture.
var (
	ErrCaptureBusy   = errors.New("a capture is already running")
	ErrCaptureFilter = errors.New("bad capture filter")
)

// CaptureDir says which side of the data path a captured frame was seen on.
type CaptureDir uint8

// The capture directions.
const (
	CaptureReceived CaptureDir = iota // as it arrived on the rx ring
	CaptureSent                       // as the engine handed it to the tx ring (or to the kernel)
	CaptureDropped                    // as it arrived, for a frame the engine dropped
)

func (d CaptureDir) String() string {
	switch d {
	case CaptureReceived:
		return "received"
	case CaptureSent:
		return "sent"
	case CaptureDropped:
		return "dropped"
	}
	return "unknown"
}

// Frame.Why encodes why the engine dropped a frame: 0 when it did not, 1+encap.Reason for a
// parse or rewrite outcome, whyDrop0+Drop for a data-path drop.
const (
	whyReason0 = 1
	whyDrop0   = whyReason0 + int(encap.NumReasons)
	// whyKernel marks a sent record of a frame handed to the kernel (Out == OutKernel).
	whyKernel = whyDrop0 + int(NumDrops)
)

// WhyString names a record's reason: a drop reason (as in the metrics' labels), "to_kernel"
// for a nat reply handed to the kernel, or "".
func whyString(w uint8) string {
	switch {
	case w == 0:
		return ""
	case int(w) < whyDrop0:
		return encap.Reason(int(w) - whyReason0).String()
	case int(w) < whyKernel:
		return Drop(int(w) - whyDrop0).String()
	case int(w) == whyKernel:
		return "to_kernel"
	}
	return "unknown"
}

// CaptureOptions configure StartCapture.
type CaptureOptions struct {
	Filter CaptureFilter
	// Snaplen is the most bytes kept of a frame (0 or more than the frame size: the frame
	// size, so whole frames).
	Snaplen int
	// Ring is the number of records each worker's ring holds (0: as many as fit in 4 MiB).
	// It is rounded up to a power of two.
	Ring int
}

// defaultRingBytes sizes a worker's ring when CaptureOptions.Ring is 0.
const defaultRingBytes = 4 << 20

// capHdr is the size of a slot's header: time (ns since the workers started), interface
// index, length on the wire, captured length, direction, reason.
const capHdr = 24

// CaptureRecord is one captured frame. Data aliases the ring and is valid only during the
// callback that receives it.
type CaptureRecord struct {
	Time    time.Time
	Dir     CaptureDir
	Worker  int
	Ifindex int    // the interface it arrived on (received, dropped) or leaves by (sent); -1: the kernel
	Reason  string // why it was dropped; "to_kernel" for a sent frame handed to the kernel
	WireLen int    // the frame's length; Data holds at most Snaplen bytes of it
	Data    []byte
}

// CaptureStats count a capture's records.
type CaptureStats struct {
	Read uint64 // records taken off the rings by Read
	Lost uint64 // records that did not fit in a worker's ring
}

// capRing is one worker's ring. head and lost are written by the worker only, tail by the
// reader only.
type capRing struct {
	head atomic.Uint64
	lost atomic.Uint64
	busy atomic.Bool // the worker is inside process
	_    [64]byte
	tail atomic.Uint64
	_    [56]byte

	mem  []byte
	mask uint64
	slot int // bytes per slot: capHdr + snaplen, rounded up to 8

	// The worker's own state.
	h, t  uint64 // its head, and the tail as last loaded
	lostN uint64
	filt  capCompiled
	pk    peeked
	stage []byte // maxBatch slots
	sIdx  [maxBatch]int16
	sMark [maxBatch]uint8
	sOff  [maxBatch]int32
}

// put writes one record, or counts it lost when the ring is full.
func (r *capRing) put(now int64, dir CaptureDir, why uint8, ifindex int, wire int, data []byte) {
	if r.h-r.t > r.mask {
		r.t = r.tail.Load()
		if r.h-r.t > r.mask {
			r.lostN++
			return
		}
	}
	s := r.mem[int(r.h&r.mask)*r.slot:][:r.slot]
	n := copy(s[capHdr:], data)
	binary.LittleEndian.PutUint64(s[0:8], uint64(now))
	binary.LittleEndian.PutUint32(s[8:12], uint32(int32(ifindex)))
	binary.LittleEndian.PutUint32(s[12:16], uint32(wire))
	binary.LittleEndian.PutUint16(s[16:18], uint16(n))
	s[18], s[19] = uint8(dir), why
	r.h++
}

// Capture is an armed packet capture. Read takes its records; Close disarms it. Read, Stats
// and Close are safe for concurrent use with the workers, not with each other.
type Capture struct {
	armed  *atomic.Pointer[Capture]
	filter CaptureFilter
	rings  []*capRing
	start  time.Time
	read   uint64
	closed bool
	rec    CaptureRecord // Read's, so that handing it to the callback does not allocate
}

// StartCapture arms a capture on every worker. Only one capture runs at a time
// (ErrCaptureBusy); a filter that names a service or backend the published snapshot does not
// have is refused (ErrCaptureFilter). Its rings are allocated here, never on the data path.
func (d *Dataplane) StartCapture(opts CaptureOptions) (*Capture, error) {
	if err := opts.Filter.check(d.snap.Load()); err != nil {
		return nil, err
	}
	snap := opts.Snaplen
	if snap <= 0 || snap > d.cfg.FrameSize {
		snap = d.cfg.FrameSize
	}
	if opts.Ring < 0 || opts.Ring > 1<<24 {
		return nil, fmt.Errorf("%w: ring of %d records", ErrCaptureFilter, opts.Ring)
	}
	c := &Capture{armed: &d.capt, filter: opts.Filter}
	if len(d.workers) > 0 {
		c.start = d.workers[0].start
	}
	for range d.workers {
		c.rings = append(c.rings, newCapRing(snap, opts.Ring))
	}
	if !d.capt.CompareAndSwap(nil, c) {
		return nil, ErrCaptureBusy
	}
	return c, nil
}

func newCapRing(snaplen, records int) *capRing {
	slot := (capHdr + snaplen + 7) &^ 7
	if records == 0 {
		records = max(64, defaultRingBytes/slot)
	}
	n := uint64(1) << bits.Len64(uint64(records-1))
	return &capRing{mem: make([]byte, int(n)*slot), mask: n - 1, slot: slot,
		stage: make([]byte, maxBatch*slot)}
}

// process runs a batch through the engine and records the frames that pass the filter.
func (c *Capture) process(id int, e *Engine, s *Snapshot, frames []Frame, now int64) {
	for len(frames) > maxBatch {
		c.process(id, e, s, frames[:maxBatch], now)
		frames = frames[maxBatch:]
	}
	if id >= len(c.rings) {
		e.Process(s, frames, now)
		return
	}
	r := c.rings[id]
	r.busy.Store(true)
	if c.armed.Load() != c { // disarmed meanwhile: Close may already have drained the ring
		r.busy.Store(false)
		e.Process(s, frames, now)
		return
	}
	if !r.filt.valid || r.filt.snap != s {
		r.filt.compile(s, &c.filter)
	}
	k := 0
	for i := range frames {
		f := &frames[i]
		if f.Off < 0 || f.Len < 0 || f.Off+f.Len > len(f.Buf) {
			continue
		}
		pkt := f.Buf[f.Off : f.Off+f.Len]
		m := r.filt.match(pkt, &r.pk)
		if m == 0 {
			continue
		}
		st := r.stage[k*r.slot : (k+1)*r.slot]
		n := copy(st[capHdr:], pkt)
		binary.LittleEndian.PutUint32(st[12:16], uint32(f.Len))
		binary.LittleEndian.PutUint16(st[16:18], uint16(n))
		r.sIdx[k], r.sMark[k], r.sOff[k] = int16(i), m, int32(f.Off)
		k++
	}
	e.Process(s, frames, now)
	for j := range k {
		r.record(&frames[r.sIdx[j]], r.sMark[j], int(r.sOff[j]), r.stage[j*r.slot:(j+1)*r.slot], now)
	}
	r.head.Store(r.h)
	r.lost.Store(r.lostN)
	r.busy.Store(false)
}

// record writes the records of one staged frame f (mark from the filter, its offset as
// received, st its staging slot) after the engine has processed it.
func (r *capRing) record(f *Frame, mark uint8, off int, st []byte, now int64) {
	wire := int(binary.LittleEndian.Uint32(st[12:16]))
	rx := st[capHdr : capHdr+int(binary.LittleEndian.Uint16(st[16:18]))]
	var sent []byte
	switch {
	case f.Out == 0:
	case f.Off < 0 || f.Len < 0 || f.Off+f.Len > len(f.Buf):
		return
	case f.Out == OutKernel && off <= f.Off:
		// The engine moved Off past the Ethernet header, which it left in place.
		sent = f.Buf[off : f.Off+f.Len]
	default:
		sent = f.Buf[f.Off : f.Off+f.Len]
	}
	if mark == capPending && f.Out != 0 && !r.filt.sentTo(f, sent, &r.pk) {
		return
	}
	r.put(now, CaptureReceived, 0, f.In, wire, rx)
	switch {
	case f.Out == 0:
		r.put(now, CaptureDropped, f.Why, f.In, wire, rx)
	case f.Out == OutKernel:
		r.put(now, CaptureSent, uint8(whyKernel), -1, len(sent), sent)
	default:
		r.put(now, CaptureSent, 0, f.Out, len(sent), sent)
	}
}

// Read takes every record written so far off the rings and calls fn for each, worker by
// worker in the order each worker wrote them. It returns how many it read.
func (c *Capture) Read(fn func(*CaptureRecord)) int {
	n := 0
	rec := &c.rec
	for w, r := range c.rings {
		h, t := r.head.Load(), r.tail.Load()
		for ; t != h; t++ {
			s := r.mem[int(t&r.mask)*r.slot:][:r.slot]
			*rec = CaptureRecord{
				Time:    c.start.Add(time.Duration(binary.LittleEndian.Uint64(s[0:8]))),
				Dir:     CaptureDir(s[18]),
				Worker:  w,
				Ifindex: int(int32(binary.LittleEndian.Uint32(s[8:12]))),
				Reason:  whyString(s[19]),
				WireLen: int(binary.LittleEndian.Uint32(s[12:16])),
				Data:    s[capHdr : capHdr+int(binary.LittleEndian.Uint16(s[16:18]))],
			}
			fn(rec)
			n++
		}
		r.tail.Store(h)
	}
	c.read += uint64(n)
	return n
}

// Stats returns the records read so far and those lost so far.
func (c *Capture) Stats() CaptureStats {
	st := CaptureStats{Read: c.read}
	for _, r := range c.rings {
		st.Lost += r.lost.Load()
	}
	return st
}

// Close disarms the capture and waits until no worker writes to its rings any more; the
// records written before stay readable. Idempotent.
func (c *Capture) Close() {
	if c.closed {
		return
	}
	c.closed = true
	c.armed.CompareAndSwap(c, nil)
	for _, r := range c.rings {
		// A worker that loaded the pointer before the swap finishes its batch; one that
		// loads it after sees nil or, inside process, no longer c.
		deadline := time.Now().Add(time.Second)
		for r.busy.Load() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
	}
}
