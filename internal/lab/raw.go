package lab

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Raw is an AF_PACKET socket bound to one interface of a namespace: it sends whole
// Ethernet frames as given (no checksum is filled in) and receives every frame the
// interface sees, in both directions. Not safe for concurrent use.
type Raw struct {
	fd      int
	ifindex int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// RawSocket opens a Raw socket on ifname inside the namespace. Close (or the namespace's
// Close) releases it.
func (n *NS) RawSocket(ifname string) (*Raw, error) {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	r := &Raw{fd: -1, ifindex: l.Attrs().Index}
	err = n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("af_packet socket: %w", err)
		}
		r.fd = fd
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: r.ifindex}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind af_packet to %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	return r, n.track(r)
}

// Send transmits one Ethernet frame.
func (r *Raw) Send(frame []byte) error {
	sa := &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], frame[:6])
	if err := unix.Sendto(r.fd, frame, 0, sa); err != nil {
		return fmt.Errorf("af_packet send: %w", err)
	}
	return nil
}

// ErrTimeout is returned by Raw.Recv when no frame arrived in time.
var ErrTimeout = errors.New("lab: timeout")

// Recv waits up to timeout for one frame and copies it into buf, returning its length
// and whether the interface sent it (true) or received it (false).
func (r *Raw) Recv(buf []byte, timeout time.Duration) (int, bool, error) {
	ms := int(timeout / time.Millisecond)
	for {
		pfd := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		start := time.Now()
		k, err := unix.Poll(pfd, ms)
		if errors.Is(err, unix.EINTR) {
			ms -= int(time.Since(start) / time.Millisecond)
			if ms <= 0 {
				return 0, false, ErrTimeout
			}
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("poll af_packet: %w", err)
		}
		if k == 0 {
			return 0, false, ErrTimeout
		}
		break
	}
	m, from, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
	if err != nil {
		return 0, false, fmt.Errorf("af_packet recv: %w", err)
	}
	out := false
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		out = ll.Pkttype == unix.PACKET_OUTGOING
	}
	return m, out, nil
}

// Close closes the socket; it is idempotent.
func (r *Raw) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}
