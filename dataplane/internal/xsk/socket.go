package xsk

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ZeroCopy selects the bind mode of the first socket of a UMEM; later sockets
// inherit it from the kernel.
type ZeroCopy int

const (
	// ZeroCopyAuto tries zero copy and falls back to copy mode.
	ZeroCopyAuto ZeroCopy = iota
	// ZeroCopyOn requires zero copy (the driver must support it).
	ZeroCopyOn
	// ZeroCopyOff binds in copy mode.
	ZeroCopyOff
)

// Config describes one socket. Zero sizes take the defaults.
type Config struct {
	Ifindex int // interface index
	Queue   int // rx/tx queue id

	// Ring sizes in entries, powers of two (default 2048 each).
	RxSize, TxSize, FillSize, CompletionSize int

	ZeroCopy ZeroCopy
	// TxBudget sets XDP_MAX_TX_SKB_BUDGET: how many frames one kick sends
	// in copy mode (the kernel's default is 32). 0 leaves the default; a
	// kernel without the option is not an error (TxBudget() reports 0).
	TxBudget int
}

// Socket is an AF_XDP socket bound to one (interface, queue), with its four
// rings mapped. Not safe for concurrent use: one goroutine owns the socket,
// every other socket on its UMEM and the UMEM.
type Socket struct {
	fd       int
	umem     *UMEM
	ifindex  int
	queue    int
	zeroCopy bool
	txBudget int

	fill addrRing
	comp addrRing
	rx   descRing
	tx   descRing
	maps [4][]byte

	inFlight int // frames on the tx ring or awaiting completion
	counters Counters
	pollfd   [1]unix.PollFd
}

// Counters are what the socket did in user space, next to the kernel's Stats.
type Counters struct {
	TxKicks      uint64 // sendto wakeups (the kernel asked for them)
	TxKickErrors uint64 // wakeups that failed (EAGAIN, ENOBUFS, ENETDOWN...)
	RxWakeups    uint64 // recvfrom wakeups for the fill ring
}

// Stats are the kernel's per-socket counters (XDP_STATISTICS).
type Stats struct {
	RxDropped      uint64 // dropped for other reasons
	RxInvalidDescs uint64 // dropped: invalid descriptor
	TxInvalidDescs uint64 // dropped: invalid tx descriptor
	RxRingFull     uint64 // dropped: rx ring full
	FillRingEmpty  uint64 // times the fill ring had no frame
	TxRingEmpty    uint64 // times a wakeup found the tx ring empty
}

// Errors about sockets.
var (
	// ErrSharedUMEM: the kernel refused to bind a socket to a UMEM already
	// registered by another socket (for example across devices in zero-copy
	// mode). The caller should give the socket its own UMEM and copy frames.
	ErrSharedUMEM = errors.New("xsk: kernel refused to share the umem")
	// ErrZeroCopy: ZeroCopyOn was asked and the driver cannot do it.
	ErrZeroCopy = errors.New("xsk: zero copy not available")
)

// Open creates a socket on u bound to cfg.Ifindex and cfg.Queue. The first
// socket on a UMEM registers it; later ones share it (XDP_SHARED_UMEM) and get
// their own fill and completion rings, which the kernel allows only on another
// (interface, queue) than the other sockets of the UMEM.
func Open(u *UMEM, cfg Config) (*Socket, error) {
	if u.mem == nil {
		return nil, ErrUMEMClosed
	}
	if len(u.open) > 0 && u.owner == nil {
		return nil, fmt.Errorf("the socket that registered the umem is closed: %w", ErrUMEMClosed)
	}
	if cfg.Ifindex < 1 || cfg.Queue < 0 {
		return nil, fmt.Errorf("ifindex %d queue %d: %w", cfg.Ifindex, cfg.Queue, ErrConfig)
	}
	for _, p := range []*int{&cfg.RxSize, &cfg.TxSize, &cfg.FillSize, &cfg.CompletionSize} {
		if *p == 0 {
			*p = 2048
		}
		if *p < 1 || *p > 1<<20 || *p&(*p-1) != 0 {
			return nil, fmt.Errorf("ring size %d (want a power of two up to %d): %w", *p, 1<<20, ErrConfig)
		}
	}
	if u.owner != nil {
		for _, s := range u.open {
			if s.ifindex == cfg.Ifindex && s.queue == cfg.Queue {
				return nil, fmt.Errorf("umem already has a socket on ifindex %d queue %d: %w",
					cfg.Ifindex, cfg.Queue, ErrConfig)
			}
		}
		s, err := open(u, cfg, unix.XDP_SHARED_UMEM)
		if err != nil {
			return nil, err
		}
		s.zeroCopy = u.owner.zeroCopy
		return s, nil
	}
	switch cfg.ZeroCopy {
	case ZeroCopyOff:
		return open(u, cfg, unix.XDP_COPY|unix.XDP_USE_NEED_WAKEUP)
	case ZeroCopyOn:
		s, err := open(u, cfg, unix.XDP_ZEROCOPY|unix.XDP_USE_NEED_WAKEUP)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrZeroCopy, err)
		}
		return s, nil
	default:
		s, err := open(u, cfg, unix.XDP_ZEROCOPY|unix.XDP_USE_NEED_WAKEUP)
		if err == nil {
			return s, nil
		}
		return open(u, cfg, unix.XDP_COPY|unix.XDP_USE_NEED_WAKEUP)
	}
}

func open(u *UMEM, cfg Config, bindFlags uint16) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create af_xdp socket: %w", err)
	}
	s := &Socket{fd: fd, umem: u, ifindex: cfg.Ifindex, queue: cfg.Queue}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	shared := bindFlags&unix.XDP_SHARED_UMEM != 0
	if !shared {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(&u.mem[0]))),
			Len:      uint64(len(u.mem)),
			Size:     uint32(u.frameSize),
			Headroom: u.headroom,
		}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("register umem: %w", err)
		}
	}
	for _, r := range []struct {
		opt  int
		size int
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionSize},
		{unix.XDP_RX_RING, cfg.RxSize},
		{unix.XDP_TX_RING, cfg.TxSize},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, r.size); err != nil {
			return nil, fmt.Errorf("size ring (option %d) to %d: %w", r.opt, r.size, err)
		}
	}
	if cfg.TxBudget > 0 {
		err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, cfg.TxBudget)
		switch {
		case err == nil:
			s.txBudget = cfg.TxBudget
		case errors.Is(err, unix.ENOPROTOOPT):
		default:
			return nil, fmt.Errorf("set tx budget %d: %w", cfg.TxBudget, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("read ring offsets: %w", err)
	}
	rings := []struct {
		pgoff int64
		off   unix.XDPRingOffset
		size  int
		entry int
	}{
		{unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillSize, 8},
		{unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.CompletionSize, 8},
		{unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxSize, int(unsafe.Sizeof(Desc{}))},
		{unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TxSize, int(unsafe.Sizeof(Desc{}))},
	}
	for i, r := range rings {
		m, err := unix.Mmap(fd, r.pgoff, int(r.off.Desc)+r.size*r.entry,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("map ring %d: %w", i, err)
		}
		s.maps[i] = m
	}
	ro := func(o unix.XDPRingOffset) ringOffsets {
		return ringOffsets{producer: o.Producer, consumer: o.Consumer, desc: o.Desc, flags: o.Flags}
	}
	s.fill.init(s.maps[0], ro(off.Fr), uint32(cfg.FillSize))
	s.comp.init(s.maps[1], ro(off.Cr), uint32(cfg.CompletionSize))
	s.rx.init(s.maps[2], ro(off.Rx), uint32(cfg.RxSize))
	s.tx.init(s.maps[3], ro(off.Tx), uint32(cfg.TxSize))

	sa := &unix.SockaddrXDP{Flags: bindFlags, Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if shared {
		sa.SharedUmemFD = uint32(u.owner.fd)
	}
	if err := bind(fd, sa); err != nil {
		if shared {
			return nil, fmt.Errorf("bind to ifindex %d queue %d: %w: %w", cfg.Ifindex, cfg.Queue, ErrSharedUMEM, err)
		}
		return nil, fmt.Errorf("bind to ifindex %d queue %d (flags %#x): %w", cfg.Ifindex, cfg.Queue, bindFlags, err)
	}
	if !shared {
		var opts uint32
		if err := getsockopt(fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
			return nil, fmt.Errorf("read socket options: %w", err)
		}
		s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
		u.owner = s
	}
	u.open = append(u.open, s)
	return s, nil
}

// FD returns the socket's file descriptor, for the XSKMAP of the XDP program.
func (s *Socket) FD() int { return s.fd }

// UMEM returns the UMEM the socket works on.
func (s *Socket) UMEM() *UMEM { return s.umem }

// Ifindex returns the interface index the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue returns the queue id the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// ZeroCopyOn reports whether the socket runs in zero-copy mode (false: copy).
func (s *Socket) ZeroCopyOn() bool { return s.zeroCopy }

// TxBudget returns the XDP_MAX_TX_SKB_BUDGET in effect, 0 for the default.
func (s *Socket) TxBudget() int { return s.txBudget }

// Counters returns the socket's user-space counters.
func (s *Socket) Counters() Counters { return s.counters }

// InFlight returns how many transmitted frames the kernel has not completed.
func (s *Socket) InFlight() int { return s.inFlight }

// Receive copies up to len(descs) received descriptors into descs and returns
// how many. Their frames now belong to the caller: transmit them, or give them
// back with UMEM.Free. When nothing arrived and the kernel asks for a wakeup of
// the fill ring, Receive makes one.
func (s *Socket) Receive(descs []Desc) int {
	n := s.rx.get(descs)
	if n == 0 && s.fill.needWakeup() {
		s.counters.RxWakeups++
		unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
	return n
}

// Transmit puts up to len(descs) descriptors on the tx ring, publishes them
// once, kicks the kernel if it asks, and returns how many went on the ring; the
// caller still owns the frames of the rest. Each descriptor's packet must lie
// inside one frame of this socket's UMEM.
func (s *Socket) Transmit(descs []Desc) int {
	n := s.tx.put(descs)
	s.inFlight += n
	if n > 0 {
		s.kick()
	}
	return n
}

// Kick wakes the kernel's transmit path when the tx ring holds frames the
// kernel has not taken and the kernel asks for a wakeup. Transmit kicks by
// itself; Kick is for a copy-mode kernel that sent only its budget.
func (s *Socket) Kick() {
	if s.inFlight > 0 && s.tx.cachedProd != atomic.LoadUint32(s.tx.consumer) {
		s.kick()
	}
}

func (s *Socket) kick() {
	if !s.tx.needWakeup() {
		return
	}
	s.counters.TxKicks++
	// sendto never blocks with MSG_DONTWAIT: the raw call keeps the Go
	// scheduler out of it (a syscall through the scheduler costs more than the send).
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		s.counters.TxKickErrors++
	}
}

// Complete takes every transmitted frame the kernel completed off the
// completion ring, puts it on the UMEM's free stack and returns how many.
func (s *Socket) Complete() int {
	idx, n := s.comp.peek(s.comp.size)
	for i := range n {
		s.umem.Free(s.comp.addrs[(idx+i)&s.comp.mask])
	}
	if n > 0 {
		s.comp.release(n)
		s.inFlight -= int(n)
	}
	return int(n)
}

// Fill moves up to max frames (all it can when max < 0) from the UMEM's free
// stack to the fill ring, publishes them once and returns how many.
func (s *Socket) Fill(max int) int {
	want := uint32(len(s.umem.free))
	if max >= 0 && uint32(max) < want {
		want = uint32(max)
	}
	if want == 0 {
		return 0
	}
	idx, n := s.fill.reserve(want)
	for i := range n {
		addr, _ := s.umem.Alloc()
		s.fill.addrs[(idx+i)&s.fill.mask] = addr
	}
	if n > 0 {
		s.fill.submit(n)
	}
	return int(n)
}

// Poll waits up to timeout for received packets (or room on the tx ring when
// the ring is full) and reports whether any arrived. It is for an idle worker;
// a busy one never calls it.
func (s *Socket) Poll(timeout time.Duration) (bool, error) {
	s.pollfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	n, err := unix.Poll(s.pollfd[:], int(timeout/time.Millisecond))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return false, fmt.Errorf("poll af_xdp socket: %w", err)
	}
	return n > 0 && s.pollfd[0].Revents&unix.POLLIN != 0, nil
}

// Stats reads the kernel's counters for the socket.
func (s *Socket) Stats() (Stats, error) {
	var st unix.XDPStatistics
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return Stats{}, fmt.Errorf("read xdp statistics: %w", err)
	}
	return Stats{
		RxDropped:      st.Rx_dropped,
		RxInvalidDescs: st.Rx_invalid_descs,
		TxInvalidDescs: st.Tx_invalid_descs,
		RxRingFull:     st.Rx_ring_full,
		FillRingEmpty:  st.Rx_fill_ring_empty_descs,
		TxRingEmpty:    st.Tx_ring_empty_descs,
	}, nil
}

// Close unmaps the rings and closes the socket. Frames still on its rings go
// back to the UMEM's free stack only for the tx ring's completed frames; the
// others are lost to the UMEM until it is closed. Close the sockets that share
// a UMEM before the one that registered it.
func (s *Socket) Close() error {
	if s.fd < 0 {
		return nil
	}
	u := s.umem
	for i, o := range u.open {
		if o == s {
			u.open = append(u.open[:i], u.open[i+1:]...)
			break
		}
	}
	if u.owner == s {
		u.owner = nil
	}
	return s.release()
}

func (s *Socket) release() error {
	for i, m := range s.maps {
		if m != nil {
			_ = unix.Munmap(m)
			s.maps[i] = nil
		}
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("close af_xdp socket: %w", err)
	}
	return nil
}

// bind binds, retrying for up to a second while the queue is busy: the kernel
// releases the previous socket's hold on a queue in a deferred work item, so a
// socket reopened right after a close can find it still taken.
func bind(fd int, sa *unix.SockaddrXDP) error {
	var err error
	for range 100 {
		if err = unix.Bind(fd, sa); !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p),
		uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
