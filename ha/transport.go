package ha

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/xlb-dev/xlb/ha/internal/sock"
)

// ErrNoSource is returned by OpenTransport when the interface has no usable source address.
var ErrNoSource = errors.New("vrrp: no source address on interface")

// RecvInfo describes a received VRRP message: the IP addresses and the TTL / hop limit.
type RecvInfo struct {
	Src, Dst netip.Addr
	TTL      uint8
}

// Transport carries VRRP messages and link-layer announcements for one virtual router. The
// raw-socket implementation comes from OpenTransport; tests plug in their own.
type Transport interface {
	// Source is the address advertisements are sent from: the router's primary address.
	Source() netip.Addr
	// Send transmits one VRRP message (checksummed for Source() -> dst) to dst.
	Send(msg []byte, dst netip.Addr) error
	// Recv blocks for the next VRRP message and returns it (a sub-slice of buf). After
	// Close it returns an error.
	Recv(buf []byte) ([]byte, RecvInfo, error)
	// Announce sends a gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6)
	// for vip with this host's MAC address.
	Announce(vip netip.Addr) error
	// Close releases the sockets and wakes a blocked Recv.
	Close() error
}

// rawTransport is the Transport over raw IP and AF_PACKET sockets.
type rawTransport struct {
	vrrp  *sock.VRRP
	pkt   *sock.Packet
	src   netip.Addr
	mac   [6]byte
	frame []byte
}

// OpenTransport opens raw sockets for cfg (which must be valid) on cfg.Interface in the
// network namespace of the calling thread: a raw IP socket for protocol 112 (joined to the
// VRRP multicast group unless unicast peers are configured) and an AF_PACKET socket for
// announcements. The sockets stay in that namespace whichever thread uses them later.
func OpenTransport(cfg *Config) (Transport, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp interface %s: %w", cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("vrrp interface %s: not an Ethernet interface", cfg.Interface)
	}
	src := cfg.SourceAddress
	if !src.IsValid() {
		if src, err = primaryAddr(ifi, cfg); err != nil {
			return nil, err
		}
	}
	v, err := sock.OpenVRRP(ifi.Name, ifi.Index, cfg.IPv6(), len(cfg.UnicastPeers) == 0)
	if err != nil {
		return nil, err
	}
	p, err := sock.OpenPacket(ifi.Index)
	if err != nil {
		v.Close()
		return nil, err
	}
	return &rawTransport{vrrp: v, pkt: p, src: src, mac: [6]byte(ifi.HardwareAddr)}, nil
}

// primaryAddr picks the interface's first IPv4 address that is not a VIP, or its IPv6
// link-local address (RFC 5798 section 5.1.2.1).
func primaryAddr(ifi *net.Interface, cfg *Config) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp interface %s addresses: %w", ifi.Name, err)
	}
	v6 := cfg.IPv6()
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		switch {
		case !v6 && ip.Is4() && !slices.Contains(cfg.VIPs, ip):
			return ip, nil
		case v6 && ip.Is6() && ip.IsLinkLocalUnicast():
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w %s (set vrrp.source_address)", ErrNoSource, ifi.Name)
}

func (t *rawTransport) Source() netip.Addr { return t.src }

func (t *rawTransport) Send(msg []byte, dst netip.Addr) error {
	return t.vrrp.Send(msg, t.src, dst)
}

func (t *rawTransport) Recv(buf []byte) ([]byte, RecvInfo, error) {
	msg, m, err := t.vrrp.Recv(buf)
	return msg, RecvInfo{Src: m.Src, Dst: m.Dst, TTL: m.TTL}, err
}

func (t *rawTransport) Announce(vip netip.Addr) error {
	t.frame = AppendAnnouncement(t.frame[:0], t.mac, vip)
	return t.pkt.Send(t.frame)
}

func (t *rawTransport) Close() error {
	return errors.Join(t.vrrp.Close(), t.pkt.Close())
}
