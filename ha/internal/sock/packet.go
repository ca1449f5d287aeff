package sock

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Packet is a send-only AF_PACKET socket on one interface, for link-layer announcements.
type Packet struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
}

// OpenPacket opens a send-only AF_PACKET socket (protocol 0: it receives nothing).
func OpenPacket(ifindex int) (*Packet, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("af_packet socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("af_packet socket: %w", err)
	}
	return &Packet{f: f, rc: rc, ifindex: ifindex}, nil
}

// Send transmits one complete Ethernet frame out of the interface.
func (p *Packet) Send(frame []byte) error {
	if len(frame) < 14 {
		return fmt.Errorf("af_packet send: frame of %d bytes", len(frame))
	}
	to := &unix.SockaddrLinklayer{
		Ifindex:  p.ifindex,
		Protocol: binary.NativeEndian.Uint16(frame[12:14]), // kept in network byte order
		Halen:    6,
	}
	copy(to.Addr[:], frame[:6])
	var serr error
	err := p.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), frame, 0, to)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return fmt.Errorf("af_packet send: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("af_packet send: %w", serr)
	}
	return nil
}

// Close closes the socket.
func (p *Packet) Close() error { return p.f.Close() }
