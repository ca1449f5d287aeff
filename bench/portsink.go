package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/xsk"
	"github.com/xlb-dev/xlb/internal/inns"
	"golang.org/x/sys/unix"
)

// SinkCounts is what a port sink received since it started: the answer to a generator's
// question on the control connection.
type SinkCounts struct {
	Port PortInfo `json:"port"`
	// BootID identifies the sink's kernel: latency is meaningful only when the generator
	// runs on the same one (the send time in the payload is that host's CLOCK_MONOTONIC).
	BootID string `json:"boot_id"`
	// Frames counts everything received; Packets and Bytes (FCS included) the generated
	// frames among them (those with the generator's magic in the payload).
	Frames  uint64 `json:"frames"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Latency is the send-to-receive time of the generated frames that carry a send time.
	Latency HistogramWire `json:"latency"`
	// RxDropped sums the sockets' kernel counters of frames the kernel had for them but lost
	// before the sink saw them: rx ring full, no frame on the fill ring, too big.
	RxDropped uint64 `json:"rx_dropped"`
}

// Sink receives on every queue of a port through AF_XDP (an XDP program redirects each
// queue's frames to its socket; ARP still goes to the kernel, so the port answers for its
// address) and counts the generator's frames and their latency.
type Sink struct {
	info  PortInfo
	rd    *Redirect
	qs    []*sinkQueue
	stop  atomic.Bool
	wg    sync.WaitGroup
	boot  string
	close sync.Once
}

// sinkQueue is one queue's counts, published by its thread once per batch.
type sinkQueue struct {
	mu                     sync.Mutex
	frames, packets, bytes uint64
	dropped                uint64
	lat                    Histogram
	err                    error
}

// StartSink opens the port's sockets, one thread per queue, and starts counting. It returns
// once every socket is open.
func StartSink(p Port) (*Sink, error) {
	info, err := p.lookup()
	if err != nil {
		return nil, err
	}
	s := &Sink{info: info, boot: bootID()}
	if err := inNS(p.NS, func() (err error) {
		s.rd, err = attachRedirect(info.Index, true, link.XDPDriverMode)
		if err != nil {
			// A driver without native XDP: the kernel's generic XDP (copy mode only).
			var gerr error
			if s.rd, gerr = attachRedirect(info.Index, true, link.XDPGenericMode); gerr != nil {
				return errors.Join(err, gerr)
			}
			s.info.GenericXDP = true
		}
		return nil
	}); err != nil {
		return nil, err
	}
	s.info.ZeroCopy = true
	for q := range info.Queues {
		sq := &sinkQueue{}
		ready := make(chan opened, 1)
		s.wg.Add(1)
		go s.run(p, q, info.CPUs[q], sq, ready)
		o := <-ready
		if o.err != nil {
			s.Close()
			return nil, o.err
		}
		s.qs = append(s.qs, sq)
		s.info.ZeroCopy = s.info.ZeroCopy && o.zeroCopy
	}
	return s, nil
}

// Info returns the port as the sink opened it.
func (s *Sink) Info() PortInfo { return s.info }

// Counts returns what the sink received so far.
func (s *Sink) Counts() SinkCounts {
	c := SinkCounts{Port: s.info, BootID: s.boot}
	var h Histogram
	for _, q := range s.qs {
		q.mu.Lock()
		c.Frames += q.frames
		c.Packets += q.packets
		c.Bytes += q.bytes
		c.RxDropped += q.dropped
		h.Merge(&q.lat)
		q.mu.Unlock()
	}
	c.Latency = h.Wire()
	return c
}

// Close stops the threads, closes the sockets and detaches the program. It returns the
// errors the queues' threads met, and the detach's.
func (s *Sink) Close() error {
	var errs []error
	s.close.Do(func() {
		s.stop.Store(true)
		s.wg.Wait()
		for _, q := range s.qs {
			errs = append(errs, q.err)
		}
		if s.rd != nil {
			errs = append(errs, s.rd.Close())
		}
	})
	return errors.Join(errs...)
}

// opened is what a queue's thread reports once its socket is open (or failed to open).
type opened struct {
	err      error
	zeroCopy bool
}

const sinkFrames = 8192 // per queue: the fill ring's 4096 and as many on the rx ring

// run is queue q's thread: socket, then receive and count until Close.
func (s *Sink) run(p Port, q, cpu int, sq *sinkQueue, ready chan<- opened) {
	defer s.wg.Done()
	if err := onThread(p.NS, cpu, func() error { return s.serve(p, q, sq, ready) }); err != nil {
		ready <- opened{err: fmt.Errorf("%w: %s queue %d: %w", ErrPort, s.info.Iface, q, err)}
	}
}

// serve opens queue q's socket, says so on ready, and counts until Close. An error means it
// never said so.
func (s *Sink) serve(p Port, q int, sq *sinkQueue, ready chan<- opened) error {
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: sinkFrames})
	if err != nil {
		return err
	}
	defer u.Close()
	sock, err := xsk.Open(u, xsk.Config{Ifindex: s.info.Index, Queue: q, RxSize: sinkFrames / 2,
		FillSize: sinkFrames / 2, TxSize: 64, CompletionSize: 64, ZeroCopy: p.ZeroCopy})
	if err != nil {
		return err
	}
	defer sock.Close()
	if err := s.rd.Register(q, sock.FD()); err != nil {
		return err
	}
	sock.Fill(sinkFrames / 2)
	ready <- opened{zeroCopy: sock.ZeroCopyOn()}
	s.count(u, sock, sq)
	return nil
}

// count receives and counts until Close.
func (s *Sink) count(u *xsk.UMEM, sock *xsk.Socket, sq *sinkQueue) {
	var rx [genBatch]xsk.Desc
	for batches := 0; !s.stop.Load(); batches++ {
		n := sock.Receive(rx[:])
		if n == 0 || batches%256 == 0 {
			st, _ := sock.Stats()
			sq.mu.Lock()
			// A frame dropped for an empty fill ring counts in both RxDropped and
			// FillRingEmpty (the kernel's xsk_buff_alloc failing): count it once.
			sq.dropped = st.RxDropped + st.RxRingFull
			sq.mu.Unlock()
		}
		if n == 0 {
			if _, err := sock.Poll(50 * time.Millisecond); err != nil {
				sq.mu.Lock()
				sq.err = err
				sq.mu.Unlock()
				return
			}
			continue
		}
		now := monotonic()
		sq.mu.Lock() // once per batch; Counts takes it too, rarely
		for _, d := range rx[:n] {
			f := u.Frame(d.Addr)
			off := u.Offset(d.Addr)
			magic, sent, timed := stampOf(f[off : off+int(d.Len)])
			if magic {
				sq.packets++
				sq.bytes += uint64(d.Len) + fcsLen
				if timed && now >= sent {
					sq.lat.Record(now - sent)
				}
			}
			u.Free(d.Addr)
		}
		sq.frames += uint64(n)
		sq.mu.Unlock()
		sock.Fill(n)
	}
}

// onThread runs fn on the calling goroutine's thread, locked to it for good, inside namespace
// ns (the caller's for 0 or -1) and pinned to cpu (unless negative). The thread is never given
// back to the scheduler: pinned, and maybe in another namespace, it ends with its goroutine.
func onThread(ns netns.NsHandle, cpu int, fn func() error) error {
	runtime.LockOSThread()
	return inns.Do(nsOf(ns), func() error {
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("pin to cpu %d: %w", cpu, err)
			}
		}
		return fn()
	})
}

// nsOf maps the bench's "0 or -1: the caller's namespace" to netns's none.
func nsOf(ns netns.NsHandle) netns.NsHandle {
	if ns <= 0 {
		return netns.None()
	}
	return ns
}

// stampOf finds the generator's payload in frame f (Ethernet, an optional 802.1Q tag, IPv4,
// optionally IPIP, then UDP or TCP): whether it carries the magic, and the send time when it
// has one. It allocates nothing.
func stampOf(f []byte) (magic bool, sent uint64, timed bool) {
	if len(f) < ethLen {
		return false, 0, false
	}
	et, l3 := binary.BigEndian.Uint16(f[12:]), ethLen
	if et == 0x8100 && len(f) >= ethLen+4 {
		et, l3 = binary.BigEndian.Uint16(f[16:]), ethLen+4
	}
	if et != 0x0800 {
		return false, 0, false
	}
	ip := f[l3:]
	for range 2 { // the packet, or an IPIP outer header and the packet
		if len(ip) < ipv4Len || ip[0]>>4 != 4 {
			return false, 0, false
		}
		hl := int(ip[0]&0x0f) * 4
		if hl < ipv4Len || len(ip) < hl {
			return false, 0, false
		}
		proto, l4 := ip[9], ip[hl:]
		var off int
		switch proto {
		case 4:
			ip = l4
			continue
		case 17:
			off = udpLen
		case 6:
			if len(l4) < tcpLen {
				return false, 0, false
			}
			off = int(l4[12]>>4) * 4
		default:
			return false, 0, false
		}
		if len(l4) < off+magicLen || binary.BigEndian.Uint32(l4[off:]) != payloadMagic {
			return false, 0, false
		}
		if len(l4) >= off+stampLen {
			return true, binary.BigEndian.Uint64(l4[off+magicLen:]), true
		}
		return true, 0, false
	}
	return false, 0, false
}
