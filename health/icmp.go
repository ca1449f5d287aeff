package health

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/encap"
)

// ICMP checks that Target answers an ICMP (IPv4) or ICMPv6 echo request. It opens a raw ICMP
// socket when it may (root or CAP_NET_RAW) and falls back to an unprivileged ping socket
// (SOCK_DGRAM, allowed by net.ipv4.ping_group_range) otherwise. Replies are matched by
// source address, identifier (raw sockets; a ping socket's kernel matches it), sequence number
// and a random per-probe payload, so concurrent checks never take each other's replies.
type ICMP struct {
	// Target is the address to ping (IPv4, IPv4-mapped IPv6, or IPv6, with zone if link-local).
	Target netip.Addr
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
	// PingSocket uses the unprivileged ping socket even when a raw socket is allowed.
	PingSocket bool

	once sync.Once
	id   uint16
	seq  atomic.Uint32
}

// icmpPayload is the size of the random token each echo request carries.
const icmpPayload = 16

// ICMP message types (RFC 792, RFC 4443).
const (
	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

// Check sends one echo request and waits for its reply.
func (c *ICMP) Check(ctx context.Context) (Report, error) {
	dst := c.Target.Unmap()
	if !dst.IsValid() || dst.IsUnspecified() {
		return Report{}, fmt.Errorf("icmp check %s: %w: no target address", c.Target, ErrConfig)
	}
	c.once.Do(func() {
		var b [2]byte
		_, _ = rand.Read(b[:])
		c.id = binary.BigEndian.Uint16(b[:])
	})
	conn, raw, err := listenICMP(ctx, dst.Is6(), c.PingSocket, c.Dialer)
	if err != nil {
		return Report{}, fmt.Errorf("icmp socket: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	seq := uint16(c.seq.Add(1))
	var msg [8 + icmpPayload]byte
	typ := byte(icmpv4EchoRequest)
	if dst.Is6() {
		typ = icmpv6EchoRequest
	}
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[4:], c.id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	_, _ = rand.Read(msg[8:])
	if !dst.Is6() {
		// The kernel fills the ICMPv6 checksum itself (RFC 3542 section 3.1), and a ping
		// socket recomputes the ICMP one; a raw IPv4 socket sends what we write.
		binary.BigEndian.PutUint16(msg[2:], checksum(msg[:]))
	}
	var to net.Addr
	if raw {
		to = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	} else {
		to = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	if _, err := conn.WriteTo(msg[:], to); err != nil {
		return Report{}, timeoutErr(ctx, "icmp send", err)
	}
	var buf [1500]byte
	for {
		n, from, err := conn.ReadFrom(buf[:])
		if err != nil {
			return Report{}, timeoutErr(ctx, "icmp receive", err)
		}
		if addrOf(from) != dst.WithZone("") {
			continue
		}
		// A ping socket's kernel rewrites the identifier to the socket's own and delivers
		// only replies carrying it; a raw socket sees every ICMP message.
		if matchEchoReply(buf[:n], dst.Is6(), raw, c.id, seq, msg[8:]) {
			return Report{}, nil
		}
	}
}

// matchEchoReply reports whether b (an ICMP message, no IP header) is the echo reply to the
// request with this id (checked when checkID), seq and payload.
func matchEchoReply(b []byte, v6, checkID bool, id, seq uint16, payload []byte) bool {
	if len(b) < 8+len(payload) {
		return false
	}
	want := byte(icmpv4EchoReply)
	if v6 {
		want = icmpv6EchoReply
	}
	if b[0] != want || b[1] != 0 {
		return false
	}
	if checkID && binary.BigEndian.Uint16(b[4:]) != id {
		return false
	}
	if binary.BigEndian.Uint16(b[6:]) != seq {
		return false
	}
	return string(b[8:8+len(payload)]) == string(payload)
}

// addrOf returns the IP of a socket address from ReadFrom, unmapped and without zone.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 { return ^encap.Checksum(b, 0) }

// listenICMP opens a raw ICMP socket, or a ping socket when raw sockets are not permitted.
// It reports whether the socket is raw.
func listenICMP(ctx context.Context, v6, ping bool, d *Dialer) (net.PacketConn, bool, error) {
	if ping {
		pc, err := listenPing(v6, d)
		return pc, false, err
	}
	network, local := "ip4:icmp", "0.0.0.0"
	if v6 {
		network, local = "ip6:ipv6-icmp", "::"
	}
	if src := d.source(); src.IsValid() {
		local = src.String()
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		if err := echoReplyFilter(c, v6); err != nil {
			return err
		}
		return d.control(network, address, c)
	}}
	conn, err := lc.ListenPacket(ctx, network, local)
	if err == nil {
		return conn, true, nil
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		return nil, false, err
	}
	pc, perr := listenPing(v6, d)
	if perr != nil {
		return nil, false, fmt.Errorf("raw socket: %w; ping socket: %w", err, perr)
	}
	return pc, false, nil
}

// echoReplyFilter makes a raw socket drop every ICMP type but echo reply in the kernel: it
// sees the host's whole ICMP traffic otherwise.
func echoReplyFilter(c syscall.RawConn, v6 bool) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if !v6 {
			// struct icmp_filter: a bit set per type to drop.
			mask := ^uint32(1 << icmpv4EchoReply)
			serr = unix.SetsockoptInt(int(fd), unix.SOL_RAW, unix.ICMP_FILTER, int(int32(mask)))
			return
		}
		var f unix.ICMPv6Filter
		for i := range f.Data {
			f.Data[i] = ^uint32(0) // block all ...
		}
		f.Data[icmpv6EchoReply>>5] &^= 1 << (icmpv6EchoReply & 31) // ... but echo reply
		serr = unix.SetsockoptICMPv6Filter(int(fd), unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &f)
	})
	if err == nil && serr != nil {
		err = fmt.Errorf("set icmp filter: %w", serr)
	}
	return err
}

// listenPing opens an unprivileged ICMP datagram ("ping") socket.
func listenPing(v6 bool, d *Dialer) (net.PacketConn, error) {
	family, proto, network := unix.AF_INET, unix.IPPROTO_ICMP, "ping4"
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		family, proto, network = unix.AF_INET6, unix.IPPROTO_ICMPV6, "ping6"
		sa = &unix.SockaddrInet6{}
	}
	if src := d.source(); src.IsValid() {
		if v6 {
			sa = &unix.SockaddrInet6{Addr: src.As16()}
		} else {
			sa = &unix.SockaddrInet4{Addr: src.Unmap().As4()}
		}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), network)
	defer f.Close() // FilePacketConn dups the descriptor
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := d.control(network, "", rc); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	return net.FilePacketConn(f)
}

// String returns "icmp ADDR".
func (c *ICMP) String() string { return "icmp " + c.Target.String() }
