package bench

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/xsk"
	"golang.org/x/sys/unix"
)

// GenConfig configures one generator thread: one AF_XDP socket on (Ifindex, Queue).
type GenConfig struct {
	// NS is the network namespace of the interface; -1 (or 0) means the caller's.
	NS      netns.NsHandle
	Ifindex int
	Queue   int
	CPU     int // the CPU to pin the thread to; -1 leaves it unpinned
	// Template is the frame to send; Stream, when set, is a mix of frames instead.
	Template *Template
	Stream   *Stream
	// ZeroCopy is the socket's bind mode (ZeroCopyAuto, the zero value, falls back to copy
	// mode where the driver has no zero copy).
	ZeroCopy xsk.ZeroCopy
	// Rate is the target in packets per second; 0 sends flat out.
	Rate float64
	// FirstFlow is the first flow of the sequence: packet k is flow FirstFlow+k (modulo the
	// template's flow count), so with Flows above the packets sent every packet is a new flow.
	FirstFlow uint64
	// Check, when set, makes the generator also the receiving sink: frames that come back to
	// its socket (an XDP program on the interface must redirect them to it, see
	// AttachRedirect) are checked against Check and their latency recorded.
	Check *Expect
	// Redirect is the sink's XDP program on the interface: the socket registers with it.
	Redirect *Redirect
	// Drain is how long the sink keeps receiving after Stop (default 100ms).
	Drain time.Duration
}

// GenResult is what a generator did.
type GenResult struct {
	Sent  Rate // frames handed to the kernel (bytes count the FCS, as on a wire)
	Kicks uint64
	// ZeroCopy reports whether the socket ran in zero-copy mode (else copy mode).
	ZeroCopy bool
	Sink     SinkResult // with Check only
	// RxRingFull and FillRingEmpty are the socket's kernel counters: frames the sink lost.
	RxRingFull, FillRingEmpty uint64
}

// Generator is a running generator thread.
type Generator struct {
	cfg   GenConfig
	stop  atomic.Bool
	sent  atomic.Uint64
	bytes atomic.Uint64
	done  chan struct{}
	// zeroCopy is set before StartGenerator returns.
	zeroCopy bool
	res      GenResult
	err      error
	begin    time.Time
}

const (
	genBatch  = 64
	umemCount = 8192 // frames: half for the sink's fill ring, the rest to transmit
	ringSize  = 4096
)

// ErrGenerator is wrapped by errors from the generator's set-up.
var ErrGenerator = errors.New("bench: generator")

// StartGenerator opens the socket on a thread of its own (in cfg.NS, pinned to cfg.CPU)
// and starts sending. It returns once the socket is open.
func StartGenerator(cfg GenConfig) (*Generator, error) {
	if cfg.Stream == nil && cfg.Template != nil {
		cfg.Stream = SingleStream(cfg.Template)
	}
	if cfg.Stream == nil || len(cfg.Stream.Templates) == 0 || cfg.Ifindex < 1 {
		return nil, fmt.Errorf("%w: template and interface are required", ErrGenerator)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("%w: rate %g", ErrGenerator, cfg.Rate)
	}
	if cfg.Drain == 0 {
		cfg.Drain = 100 * time.Millisecond
	}
	g := &Generator{cfg: cfg, done: make(chan struct{})}
	ready := make(chan error, 1)
	go g.run(ready)
	if err := <-ready; err != nil {
		<-g.done
		return nil, err
	}
	return g, nil
}

// Sent returns how many frames the generator has sent so far.
func (g *Generator) Sent() uint64 { return g.sent.Load() }

// SentBytes returns how many bytes (FCS included) the generator has sent so far.
func (g *Generator) SentBytes() uint64 { return g.bytes.Load() }

// Stop stops the generator, waits for its thread (the sink drains first) and returns what it
// did.
func (g *Generator) Stop() (GenResult, error) {
	g.stop.Store(true)
	<-g.done
	return g.res, g.err
}

func (g *Generator) run(ready chan<- error) {
	defer close(g.done)
	err := onThread(g.cfg.NS, g.cfg.CPU, func() error { return g.serve(ready) })
	if err != nil {
		ready <- fmt.Errorf("%w: %w", ErrGenerator, err)
	}
}

// serve opens the socket, says so on ready, and sends until Stop. An error means it never
// said so.
func (g *Generator) serve(ready chan<- error) error {
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: umemCount})
	if err != nil {
		return err
	}
	defer u.Close()
	s, err := xsk.Open(u, xsk.Config{Ifindex: g.cfg.Ifindex, Queue: g.cfg.Queue, TxBudget: 64,
		RxSize: ringSize, FillSize: ringSize, TxSize: ringSize, CompletionSize: ringSize, ZeroCopy: g.cfg.ZeroCopy})
	if err != nil {
		return err
	}
	defer s.Close()
	if g.cfg.Redirect != nil {
		if err := g.cfg.Redirect.Register(g.cfg.Queue, s.FD()); err != nil {
			return err
		}
	}
	g.res.ZeroCopy = s.ZeroCopyOn()
	g.zeroCopy = g.res.ZeroCopy
	ready <- nil
	g.loop(u, s)
	if st, err := s.Stats(); err == nil {
		g.res.RxRingFull, g.res.FillRingEmpty = st.RxRingFull, st.FillRingEmpty
	}
	g.res.Kicks = s.Counters().TxKicks
	return nil
}

// monotonic returns CLOCK_MONOTONIC in nanoseconds: the clock of the payload's send time,
// the same for every process (and namespace) of a host. A vDSO call, no syscall.
func monotonic() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// frames is what the generator knows about its UMEM's frames and its position in the stream.
// One per generator thread.
type frames struct {
	u     *xsk.UMEM
	st    *Stream
	fresh []uint8 // fresh[i] is 1 + the index of the template frame i holds (0: a received frame)
	flow  uint64  // the next frame's flow
	seq   uint64  // the next frame's position in the stream's pattern
}

// build fills up to len(tx) free frames with the stream's next frames, stamped now, and
// returns how many it filled and their bytes on the wire. It allocates nothing.
func (f *frames) build(tx []xsk.Desc, now uint64) (n int, bytes uint64) {
	fs := uint64(f.u.FrameSize())
	for ; n < len(tx); n++ {
		a, ok := f.u.Alloc()
		if !ok {
			break
		}
		ti := f.st.Pattern[(f.seq+uint64(n))%uint64(len(f.st.Pattern))]
		t := f.st.Templates[ti]
		buf := f.u.Frame(a)
		if i := a / fs; f.fresh[i] == ti+1 {
			t.Patch(buf, f.flow+uint64(n), now)
		} else {
			t.Write(buf, f.flow+uint64(n), now)
			f.fresh[i] = ti + 1
		}
		tx[n] = xsk.Desc{Addr: a, Len: uint32(t.Len())}
		bytes += uint64(t.Len() + fcsLen)
	}
	return n, bytes
}

// sent moves the stream on by the k frames of tx the ring took and frees the others.
func (f *frames) sent(tx []xsk.Desc, k int) (bytes uint64) {
	for _, d := range tx[:k] {
		bytes += uint64(d.Len + fcsLen)
	}
	for _, d := range tx[k:] {
		f.u.Free(d.Addr)
	}
	f.flow += uint64(k)
	f.seq += uint64(k)
	return bytes
}

// due returns how many frames the rate allows now (genBatch at most; always genBatch flat
// out). Ahead of the rate, it sleeps until the next frame is due rather than spin when sleep
// is set, so a rate-limited generator leaves its CPU to the receive work and the device under
// test (on a small host they share it); a checking sink receives in the same loop and keeps
// spinning, so its latency is not the sleep's.
func (g *Generator) due(start time.Time, sent uint64, sleep bool) int {
	if g.cfg.Rate <= 0 {
		return genBatch
	}
	el := time.Since(start)
	due := uint64(el.Seconds() * g.cfg.Rate)
	if due > sent {
		return int(min(genBatch, due-sent))
	}
	if wait := time.Duration(float64(sent+1)/g.cfg.Rate*1e9) - el; sleep && wait > 10*time.Microsecond {
		time.Sleep(wait)
	}
	return 0
}

// loop sends (and with Check, receives) until Stop.
func (g *Generator) loop(u *xsk.UMEM, s *xsk.Socket) {
	fr := &frames{u: u, st: g.cfg.Stream, fresh: make([]uint8, u.FrameCount()), flow: g.cfg.FirstFlow}
	var sink *sink
	if g.cfg.Check != nil {
		sink = newSink(g.cfg.Check)
		s.Fill(ringSize)
	}
	var tx [genBatch]xsk.Desc
	var rx [genBatch]xsk.Desc
	var sent, bytes uint64
	start := time.Now()
	g.begin = start
	receive := func() {
		n := s.Receive(rx[:])
		if n == 0 {
			return
		}
		now := monotonic()
		for _, d := range rx[:n] {
			sink.check(u.Frame(d.Addr)[u.Offset(d.Addr):][:d.Len], now)
			fr.fresh[d.Addr/uint64(u.FrameSize())] = 0
			u.Free(d.Addr)
		}
		s.Fill(n)
	}
	for !g.stop.Load() {
		if sink != nil {
			receive()
		}
		s.Complete()
		want := g.due(start, sent, sink == nil)
		if want == 0 {
			continue
		}
		if sink != nil {
			// Keep a batch of frames back to refill the fill ring with.
			want = min(want, u.FreeFrames()-genBatch)
		}
		n, _ := fr.build(tx[:max(want, 0)], monotonic())
		k := s.Transmit(tx[:n])
		if k == 0 {
			s.Kick()
		}
		sent += uint64(k)
		bytes += fr.sent(tx[:n], k)
		g.sent.Store(sent)
		g.bytes.Store(bytes)
	}
	g.res.Sent = Rate{Packets: sent, Bytes: bytes, Elapsed: time.Since(start)}
	g.drain(s, sink != nil, receive)
	if sink != nil {
		g.res.Sink = sink.result()
	}
}

// drain completes what is in flight and, for a checking sink, keeps receiving for Drain.
func (g *Generator) drain(s *xsk.Socket, receiving bool, receive func()) {
	for deadline := time.Now().Add(g.cfg.Drain); time.Now().Before(deadline); {
		if s.InFlight() > 0 {
			s.Kick()
			s.Complete()
		}
		if !receiving {
			if s.InFlight() == 0 {
				break
			}
			continue
		}
		receive()
		runtime.Gosched()
	}
}
