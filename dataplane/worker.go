package dataplane

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/dataplane/xsk"
	"golang.org/x/sys/unix"
)

// wsock is one AF_XDP socket of a worker: bound to the worker's queue on one interface.
type wsock struct {
	s       *xsk.Socket
	u       *xsk.UMEM // the worker's shared UMEM, or the socket's own when the kernel refused
	ifindex int
	ifname  string
	onFill  int // frames on the fill ring (or in the rx ring, not yet received)
	fillCap int // how many frames the fill ring may hold
	txq     []xsk.Desc
}

// worker owns one queue id: a UMEM and a socket on that queue of every interface that has
// it. One goroutine runs it, locked to an OS thread pinned to cpu.
type worker struct {
	id     int
	queue  int
	cpu    int
	umem   *xsk.UMEM
	socks  []*wsock
	engine *Engine
	batch  int
	busy   bool // never sleep in poll(2) (InterfaceConfig.BusyPoll)
	snap   *atomic.Pointer[Snapshot]
	capt   *atomic.Pointer[Capture] // an armed packet capture, or nil
	walk   atomic.Pointer[connWalk] // a pending connection listing (conns.go), or nil
	start  time.Time

	descs  []xsk.Desc
	frames []Frame
	pollfd []unix.PollFd

	kern     *kernelTx // hands NAT replies without a route to the kernel
	kernLeft int       // what this step may still hand to the kernel

	pub     counters      // published once per batch for Stats
	stop    atomic.Bool   // set by Dataplane.Close
	done    chan struct{} // closed when the goroutine ends
	runErr  error         // why the worker stopped early (pinning failed), read after done
	running atomic.Bool
}

// idlePoll bounds how long an idle worker sleeps in poll(2), and so how long a stop waits.
const idlePoll = 50 * time.Millisecond

// drainTimeout bounds how long a stopping worker waits for the kernel to complete its
// transmitted frames.
const drainTimeout = 200 * time.Millisecond

func (w *worker) sockFor(ifindex int) *wsock {
	for _, s := range w.socks {
		if s.ifindex == ifindex {
			return s
		}
	}
	return nil
}

// fill tops up every socket's fill ring from the free frames of its UMEM.
func (w *worker) fill() {
	for _, s := range w.socks {
		want := s.fillCap - s.onFill
		if want <= 0 {
			continue
		}
		n := s.s.Fill(want)
		s.onFill += n
		if n < want {
			w.engine.c[cFillShort]++
		}
	}
}

// run is the worker's loop: it returns when stop is set, after draining.
func (w *worker) run() {
	defer close(w.done)
	if err := pinThread(w.cpu); err != nil {
		// Not pinned: keep running unpinned rather than stop the data path, but say so.
		w.runErr = err
	}
	w.running.Store(true)
	idle := 0
	for !w.stop.Load() {
		chunk := walkChunk
		if idle > 0 {
			chunk = walkChunkIdle
		}
		listing := w.serveWalk(chunk)
		if w.step() {
			idle = 0
			continue
		}
		if idle++; idle < 16 || w.busy || listing {
			continue
		}
		w.sleep()
	}
	w.drain()
	w.running.Store(false)
	if r := w.walk.Swap(nil); r != nil {
		close(r.done) // a listing this worker will not finish: it gets what was walked
	}
}

// framesOf makes frames[i] the packet of received descriptor descs[i] in UMEM u, arrived on
// interface ifindex, with everything the engine set on the frame's last use cleared. Field by
// field, in place: a Frame literal is built on the stack and copied, and the copy's 16-byte
// loads of fields just stored 8 bytes at a time wait for those stores to reach the cache
// (about 7 ns a frame more on the AMD host; see docs/bench/engine.md, round eight).
func framesOf(frames []Frame, descs []xsk.Desc, u *xsk.UMEM, ifindex int) {
	for i, d := range descs[:min(len(descs), len(frames))] {
		f := &frames[i]
		f.Buf, f.Off, f.Len = u.Frame(d.Addr), u.Offset(d.Addr), int(d.Len)
		f.In, f.Out, f.Addr, f.Why = ifindex, 0, d.Addr, 0
	}
}

// step runs one batch per socket and reports whether any frame moved.
func (w *worker) step() bool {
	snap := w.snap.Load()
	now := int64(time.Since(w.start))
	moved := false
	w.kernLeft = kernelBudget
	for _, in := range w.socks {
		in.s.Complete()
		n := in.s.Receive(w.descs[:w.batch])
		if n == 0 {
			continue
		}
		moved = true
		in.onFill -= n
		framesOf(w.frames[:n], w.descs[:n], in.u, in.ifindex)
		if c := w.capt.Load(); c != nil {
			c.process(w.id, w.engine, snap, w.frames[:n], now)
		} else {
			w.engine.Process(snap, w.frames[:n], now)
		}
		w.dispatch(in, w.frames[:n])
	}
	for _, s := range w.socks {
		if s.s.InFlight() > 0 {
			s.s.Kick() // copy mode sends a budget per kick: push the rest
			if s.s.Complete() > 0 {
				moved = true
			}
		}
	}
	w.fill()
	if moved {
		w.publish()
	}
	return moved
}

// dispatch puts every forwarded frame on its egress socket's tx ring and frees the rest.
func (w *worker) dispatch(in *wsock, frames []Frame) {
	c := &w.engine.c
	for i := range frames {
		f := &frames[i]
		if f.Out == 0 {
			in.u.Free(f.Addr)
			continue
		}
		if f.Out == OutKernel {
			if w.kernLeft <= 0 || w.kern == nil || w.kern.send(f.Buf[f.Off:f.Off+f.Len]) != nil {
				c[cDrop0+int(DropNoRoute)]++
			}
			w.kernLeft--
			in.u.Free(f.Addr)
			continue
		}
		out := in
		if f.Out != in.ifindex {
			out = w.sockFor(f.Out)
		}
		if out == nil {
			in.u.Free(f.Addr)
			c[cDrop0+int(DropNoEgress)]++
			continue
		}
		if out.u == in.u {
			out.txq = append(out.txq, xsk.Desc{Addr: in.u.Addr(f.Addr, f.Off), Len: uint32(f.Len)})
			continue
		}
		// The kernel would not share the UMEM with the egress socket: copy the packet.
		addr, ok := out.u.Alloc()
		if !ok || f.Len > out.u.FrameSize()-out.u.RxOffset() {
			if ok {
				out.u.Free(addr)
			}
			in.u.Free(f.Addr)
			c[cDrop0+int(DropTxFull)]++
			continue
		}
		off := out.u.RxOffset()
		copy(out.u.Frame(addr)[off:], f.Buf[f.Off:f.Off+f.Len])
		in.u.Free(f.Addr)
		c[cCopied]++
		out.txq = append(out.txq, xsk.Desc{Addr: addr + uint64(off), Len: uint32(f.Len)})
	}
	for _, s := range w.socks {
		if len(s.txq) == 0 {
			continue
		}
		sent := s.s.Transmit(s.txq)
		for _, d := range s.txq[:sent] {
			c[cTxBytes] += uint64(d.Len)
		}
		c[cTxPackets] += uint64(sent)
		if sent < len(s.txq) {
			c[cTxRingFull]++
			for _, d := range s.txq[sent:] {
				s.u.Free(d.Addr)
				c[cDrop0+int(DropTxFull)]++
			}
		}
		s.txq = s.txq[:0]
	}
}

func (w *worker) publish() {
	var kicks uint64
	for _, s := range w.socks {
		sc := s.s.Counters()
		kicks += sc.TxKicks + sc.RxWakeups
	}
	w.engine.c[cKicks] = kicks
	w.engine.c.publish(&w.pub)
	w.engine.fl.publish()
}

// sleep waits in poll(2) for any socket to receive, at most idlePoll.
func (w *worker) sleep() {
	for i, s := range w.socks {
		w.pollfd[i] = unix.PollFd{Fd: int32(s.s.FD()), Events: unix.POLLIN}
	}
	_, err := unix.Poll(w.pollfd, int(idlePoll/time.Millisecond))
	if err != nil && !errors.Is(err, unix.EINTR) {
		// A poll error would make an idle worker spin: back off instead.
		time.Sleep(idlePoll)
	}
}

// drain forwards what is left on the rx rings (the XDP program no longer redirects to the
// sockets when drain runs) and waits for the kernel to complete the transmitted frames.
func (w *worker) drain() {
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		w.step()
		pending := 0
		for _, s := range w.socks {
			pending += s.s.InFlight()
		}
		if pending == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	w.publish()
}

// stats returns the worker's counters as of its last batch (safe while it runs).
func (w *worker) stats() Counters {
	c := w.pub.load()
	o := c.export()
	o.addConn(w.engine.core.Stats())
	return o
}

func (w *worker) close() error {
	var errs []error
	if w.kern != nil {
		if err := w.kern.close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Sockets sharing a UMEM first, the one that registered it last.
	for i := len(w.socks) - 1; i >= 0; i-- {
		if err := w.socks[i].s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close socket on %s queue %d: %w", w.socks[i].ifname, w.queue, err))
		}
	}
	for _, s := range w.socks {
		if s.u != w.umem {
			if err := s.u.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := w.umem.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
