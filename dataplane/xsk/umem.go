package xsk

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// KernelHeadroom is XDP_PACKET_HEADROOM: the kernel leaves this many bytes in
// front of every received packet, after UMEMConfig.Headroom.
const KernelHeadroom = unix.XDP_PACKET_HEADROOM

// UMEMConfig sizes a UMEM. Zero fields take the defaults.
type UMEMConfig struct {
	// FrameSize is 2048 or 4096 (default 4096).
	FrameSize int
	// FrameCount is the number of frames (default 4096). It bounds the
	// frames in flight over all rings of all sockets on the UMEM.
	FrameCount int
	// Headroom is extra headroom registered with XDP_UMEM_REG, added in front
	// of KernelHeadroom (default 0). It must leave room for a 1500-byte
	// packet in the frame.
	Headroom int
}

// UMEM is packet memory registered with the kernel, cut into equal frames,
// with an O(1) stack of the frames user space owns. It is registered with the
// kernel by the first socket opened on it; later sockets share it
// (XDP_SHARED_UMEM). Not safe for concurrent use.
type UMEM struct {
	mem       []byte
	frameSize uint64
	frameMask uint64
	headroom  uint32
	free      []uint64  // stack of free frame base addresses
	isFree    []bool    // by frame index: on the stack, to refuse double frees
	owner     *Socket   // the socket whose fd registered the UMEM, nil before
	open      []*Socket // open sockets on the UMEM
}

// Errors about UMEMs.
var (
	ErrConfig     = errors.New("xsk: invalid configuration")
	ErrUMEMInUse  = errors.New("xsk: umem still has open sockets")
	ErrUMEMClosed = errors.New("xsk: umem is closed")
)

// NewUMEM maps and pre-faults the packet memory and puts every frame on the
// free stack.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	if cfg.FrameSize == 0 {
		cfg.FrameSize = 4096
	}
	if cfg.FrameCount == 0 {
		cfg.FrameCount = 4096
	}
	if cfg.FrameSize != 2048 && cfg.FrameSize != 4096 {
		return nil, fmt.Errorf("frame size %d (want 2048 or 4096): %w", cfg.FrameSize, ErrConfig)
	}
	if cfg.FrameCount < 1 || cfg.FrameCount > 1<<20 {
		return nil, fmt.Errorf("frame count %d (want 1..%d): %w", cfg.FrameCount, 1<<20, ErrConfig)
	}
	if cfg.Headroom < 0 || cfg.Headroom+KernelHeadroom+1514 > cfg.FrameSize {
		return nil, fmt.Errorf("headroom %d leaves no room for a 1514-byte frame in %d: %w",
			cfg.Headroom, cfg.FrameSize, ErrConfig)
	}
	mem, err := unix.Mmap(-1, 0, cfg.FrameSize*cfg.FrameCount,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map umem of %d bytes: %w", cfg.FrameSize*cfg.FrameCount, err)
	}
	u := &UMEM{
		mem:       mem,
		frameSize: uint64(cfg.FrameSize),
		frameMask: uint64(cfg.FrameSize - 1),
		headroom:  uint32(cfg.Headroom),
		free:      make([]uint64, 0, cfg.FrameCount),
		isFree:    make([]bool, cfg.FrameCount),
	}
	for i := cfg.FrameCount - 1; i >= 0; i-- {
		u.free = append(u.free, uint64(i)*u.frameSize)
		u.isFree[i] = true
	}
	return u, nil
}

// FrameSize returns the size of one frame in bytes.
func (u *UMEM) FrameSize() int { return int(u.frameSize) }

// FrameCount returns the number of frames.
func (u *UMEM) FrameCount() int { return len(u.isFree) }

// RxOffset is where a received packet starts in its frame: KernelHeadroom
// plus UMEMConfig.Headroom. All of it may be overwritten to prepend headers.
func (u *UMEM) RxOffset() int { return KernelHeadroom + int(u.headroom) }

// Frame returns the whole frame holding addr (from the frame's first byte, of
// FrameSize bytes); the packet of a descriptor d is
// Frame(d.Addr)[Offset(d.Addr):Offset(d.Addr)+int(d.Len)]. The slice aliases
// UMEM memory: it is valid until the frame is handed to the kernel again (a
// fill or tx ring) and not after Close. addr must be below FrameSize*FrameCount.
func (u *UMEM) Frame(addr uint64) []byte {
	base := addr &^ u.frameMask
	return u.mem[base : base+u.frameSize : base+u.frameSize]
}

// Offset returns addr's offset inside its frame.
func (u *UMEM) Offset(addr uint64) int { return int(addr & u.frameMask) }

// Addr returns the UMEM address of offset off in the frame holding frame.
func (u *UMEM) Addr(frame uint64, off int) uint64 { return frame&^u.frameMask + uint64(off) }

// Alloc pops a free frame and returns its base address, or ok false when user
// space owns no free frame.
func (u *UMEM) Alloc() (addr uint64, ok bool) {
	n := len(u.free)
	if n == 0 {
		return 0, false
	}
	addr = u.free[n-1]
	u.free = u.free[:n-1]
	u.isFree[addr/u.frameSize] = false
	return addr, true
}

// Free pushes the frame holding addr on the free stack. It returns false, and
// changes nothing, when addr is outside the UMEM or the frame is free already
// (a double free would hand one frame to the kernel twice).
func (u *UMEM) Free(addr uint64) bool {
	i := addr / u.frameSize
	if i >= uint64(len(u.isFree)) || u.isFree[i] {
		return false
	}
	u.isFree[i] = true
	u.free = append(u.free, addr&^u.frameMask)
	return true
}

// FreeFrames returns how many frames are on the free stack.
func (u *UMEM) FreeFrames() int { return len(u.free) }

// Close unmaps the memory. Every socket on the UMEM must be closed first.
func (u *UMEM) Close() error {
	if len(u.open) > 0 {
		return ErrUMEMInUse
	}
	if u.mem == nil {
		return nil
	}
	err := unix.Munmap(u.mem)
	u.mem = nil
	if err != nil {
		return fmt.Errorf("unmap umem: %w", err)
	}
	return nil
}
