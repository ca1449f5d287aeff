// Package sock holds the kernel-facing socket code of package ha: raw IPv4/IPv6 sockets for
// VRRP (protocol 112) and an AF_PACKET socket for gratuitous ARP / unsolicited neighbour
// advertisements. Sockets are non-blocking and registered with the Go runtime poller, so Close
// wakes a blocked reader. A socket lives in the network namespace of the thread that opened it.
package sock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrShort is returned for a received IPv4 datagram too short to hold its own header.
var ErrShort = errors.New("sock: short ipv4 datagram")

// Meta describes a received datagram.
type Meta struct {
	Src, Dst netip.Addr
	TTL      uint8 // IPv4 TTL or IPv6 hop limit
}

// VRRP is a raw socket for IP protocol 112 bound to one interface.
type VRRP struct {
	f       *os.File
	rc      syscall.RawConn
	v6      bool
	ifindex int
	oob     []byte
}

// OpenVRRP opens a raw VRRP socket on the interface: bound to it, sending with TTL/hop limit
// 255, multicast loopback off, and (if join) a member of the VRRP multicast group on it.
func OpenVRRP(ifname string, ifindex int, v6, join bool) (*VRRP, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 112)
	if err != nil {
		return nil, fmt.Errorf("raw vrrp socket: %w", err)
	}
	if err := setup(fd, ifname, ifindex, v6, join); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "vrrp:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw vrrp socket: %w", err)
	}
	return &VRRP{f: f, rc: rc, v6: v6, ifindex: ifindex, oob: make([]byte, 256)}, nil
}

func setup(fd int, ifname string, ifindex int, v6, join bool) error {
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); err != nil {
		return fmt.Errorf("bind vrrp socket to %s: %w", ifname, err)
	}
	type opt struct {
		level, name, val int
		what             string
	}
	var opts []opt
	if v6 {
		opts = []opt{
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255, "multicast hops"},
			{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255, "unicast hops"},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0, "multicast loop"},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex, "multicast if"},
			{unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1, "recv hop limit"},
			{unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1, "recv pktinfo"},
		}
	} else {
		opts = []opt{
			{unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255, "multicast ttl"},
			{unix.IPPROTO_IP, unix.IP_TTL, 255, "ttl"},
			{unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0, "multicast loop"},
		}
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.val); err != nil {
			return fmt.Errorf("vrrp socket %s: %w", o.what, err)
		}
	}
	if v6 {
		if join {
			mreq := &unix.IPv6Mreq{Interface: uint32(ifindex)}
			mreq.Multiaddr = [16]byte{0xff, 0x02, 15: 0x12}
			if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
				return fmt.Errorf("join ff02::12 on %s: %w", ifname, err)
			}
		}
		return nil
	}
	mreqn := &unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 18}, Ifindex: int32(ifindex)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreqn); err != nil {
		return fmt.Errorf("vrrp socket multicast if: %w", err)
	}
	if join {
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreqn); err != nil {
			return fmt.Errorf("join 224.0.0.18 on %s: %w", ifname, err)
		}
	}
	return nil
}

// Send transmits msg (a VRRP message) from src to dst out of the socket's interface.
func (s *VRRP) Send(msg []byte, src, dst netip.Addr) error {
	var oob []byte
	var to unix.Sockaddr
	if s.v6 {
		oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16(), Ifindex: uint32(s.ifindex)})
		to = &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: uint32(s.ifindex)}
	} else {
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(s.ifindex), Spec_dst: src.As4()})
		to = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, oob, to, 0)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return fmt.Errorf("send vrrp to %v: %w", dst, err)
	}
	if serr != nil {
		return fmt.Errorf("send vrrp to %v: %w", dst, serr)
	}
	return nil
}

// Recv blocks for the next datagram and returns the VRRP message (a sub-slice of buf, the IP
// header removed) with its addresses and TTL. It returns os.ErrClosed after Close.
func (s *VRRP) Recv(buf []byte) ([]byte, Meta, error) {
	var n, oobn int
	var from unix.Sockaddr
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, s.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, Meta{}, err
	}
	if rerr != nil {
		return nil, Meta{}, fmt.Errorf("recv vrrp: %w", rerr)
	}
	if !s.v6 {
		return parseIPv4(buf[:n])
	}
	var m Meta
	if sa, ok := from.(*unix.SockaddrInet6); ok {
		m.Src = netip.AddrFrom16(sa.Addr)
	}
	cmsgs, err := unix.ParseSocketControlMessage(s.oob[:oobn])
	if err != nil {
		return nil, Meta{}, fmt.Errorf("recv vrrp control message: %w", err)
	}
	for _, c := range cmsgs {
		if c.Header.Level != unix.IPPROTO_IPV6 {
			continue
		}
		switch {
		case c.Header.Type == unix.IPV6_HOPLIMIT && len(c.Data) >= 4:
			m.TTL = uint8(binary.NativeEndian.Uint32(c.Data))
		case c.Header.Type == unix.IPV6_PKTINFO && len(c.Data) >= 16:
			m.Dst = netip.AddrFrom16([16]byte(c.Data[:16]))
		}
	}
	return buf[:n], m, nil
}

// parseIPv4 strips the IPv4 header a raw IPv4 socket delivers.
func parseIPv4(b []byte) ([]byte, Meta, error) {
	if len(b) < 20 {
		return nil, Meta{}, ErrShort
	}
	ihl := int(b[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || len(b) < ihl || tot < ihl {
		return nil, Meta{}, ErrShort
	}
	if tot > len(b) {
		tot = len(b)
	}
	m := Meta{
		TTL: b[8],
		Src: netip.AddrFrom4([4]byte(b[12:16])),
		Dst: netip.AddrFrom4([4]byte(b[16:20])),
	}
	return b[ihl:tot], m, nil
}

// Close closes the socket and wakes a blocked Recv.
func (s *VRRP) Close() error { return s.f.Close() }
