package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asavie/xdp"
)

// asavieL2Fwd is the Go AF_XDP baseline: an l2fwd on github.com/asavie/xdp (its own XDP
// program, UMEM and rings), one socket on xa's queue 0, every frame's MACs set to xa's and a
// backend's (in turn) and sent back out of xa. No load-balancer work: what a Go AF_XDP loop
// on that library forwards on this path.
type asavieL2Fwd struct {
	stop      atomic.Bool
	done      chan error
	forwarded atomic.Uint64
}

// startAsavie starts the l2fwd thread in t's namespace, pinned to cpu.
func (t *Topology) startAsavie(cpu int) (*asavieL2Fwd, error) {
	a := &asavieL2Fwd{done: make(chan error, 1)}
	ready := make(chan error, 1)
	go a.run(t, cpu, ready)
	if err := <-ready; err != nil {
		<-a.done
		return nil, err
	}
	return a, nil
}

func (a *asavieL2Fwd) run(t *Topology, cpu int, ready chan<- error) {
	said := false
	err := onThread(t.NS.NsHandle(), cpu, func() error { return a.serve(t, ready, &said) })
	if err != nil {
		err = fmt.Errorf("bench: asavie l2fwd: %w", err)
		if !said {
			ready <- err
		}
	}
	a.done <- err
}

// serve opens the library's program and socket on xa, says so on ready (and in said), and
// forwards until Close.
func (a *asavieL2Fwd) serve(t *Topology, ready chan<- error, said *bool) (err error) {
	ifindex := t.XA.Attrs().Index
	prog, err := xdp.NewProgram(1)
	if err != nil {
		return err
	}
	defer prog.Close()
	if err := prog.Attach(ifindex); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, prog.Detach(ifindex)) }()
	opts := xdp.SocketOptions{NumFrames: 8192, FrameSize: 2048, FillRingNumDescs: 4096,
		CompletionRingNumDescs: 4096, RxRingNumDescs: 4096, TxRingNumDescs: 4096}
	xsk, err := newAsavieSocket(ifindex, &opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeAsavie(xsk)) }()
	if err := prog.Register(0, xsk.FD()); err != nil {
		return err
	}
	*said = true
	ready <- nil
	var macs [numBackends][6]byte
	for i := range numBackends {
		_, macs[i] = Backend(i)
	}
	var n uint64
	for !a.stop.Load() {
		xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
		rx, _, err := xsk.Poll(50)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		descs := xsk.Receive(rx)
		for _, d := range descs {
			f := xsk.GetFrame(d)
			copy(f[0:6], macs[n%numBackends][:])
			copy(f[6:12], t.MACA[:])
			n++
		}
		xsk.Transmit(descs)
		a.forwarded.Store(n)
	}
	return nil
}

// newAsavieSocket opens the socket, retrying for up to a second while the queue is busy: the
// kernel releases the previous socket's hold on a queue in deferred work (dataplane/xsk's
// bind does the same; asavie's error wraps with %v, so only its text tells EBUSY).
func newAsavieSocket(ifindex int, opts *xdp.SocketOptions) (*xdp.Socket, error) {
	for try := 0; ; try++ {
		xsk, err := xdp.NewSocket(ifindex, 0, opts)
		if err == nil || try == 100 || !strings.Contains(err.Error(), unix.EBUSY.Error()) {
			return xsk, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closeAsavie closes an asavie socket and unmaps its four rings, which the library's Close
// leaves mapped: the mappings hold the socket, which then stays bound to its queue, and the
// next socket on that queue fails with EBUSY.
func closeAsavie(xsk *xdp.Socket) error {
	var st unix.Stat_t
	serr := unix.Fstat(xsk.FD(), &st)
	err := xsk.Close()
	if serr != nil {
		return errors.Join(err, fmt.Errorf("bench: asavie socket: %w", serr))
	}
	maps, rerr := os.ReadFile("/proc/self/maps")
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	tag := fmt.Sprintf("socket:[%d]", st.Ino)
	for _, l := range strings.Split(string(maps), "\n") {
		if !strings.HasSuffix(l, tag) {
			continue
		}
		var lo, hi uintptr
		if _, e := fmt.Sscanf(l, "%x-%x", &lo, &hi); e != nil {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MUNMAP, lo, hi-lo, 0); errno != 0 {
			err = errors.Join(err, fmt.Errorf("bench: unmap asavie ring: %w", errno))
		}
	}
	return err
}

// Close stops the loop and detaches the program.
func (a *asavieL2Fwd) Close() error {
	a.stop.Store(true)
	return <-a.done
}
