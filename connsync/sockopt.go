package connsync

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the calling thread's CPU time (0 when unknown).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// socketBuffer is the receive and send buffer size the node asks for: a burst of a few
// thousand messages (a flood of new flows, a scheduling stall of the receiver) waits in
// the kernel instead of being lost.
const socketBuffer = 4 << 20

// setBuffers sizes pc's buffers: past net.core.[rw]mem_max where the process may
// (CAP_NET_ADMIN: SO_RCVBUFFORCE), else up to that limit. Best effort: the defaults work,
// with more loss under bursts (counted as lost by the receiver).
func setBuffers(pc *net.UDPConn, size int) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return
	}
	forced := false
	_ = rc.Control(func(fd uintptr) {
		e1 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		forced = e1 == nil && e2 == nil
	})
	if !forced {
		_ = pc.SetReadBuffer(size)
		_ = pc.SetWriteBuffer(size)
	}
}
