package encap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Errors returned by NewTunnel.
var (
	ErrTunnelFamily = errors.New("tunnel source and backend are of different address families")
	ErrTunnelAddr   = errors.New("tunnel address is not valid")
	ErrTunnelMTU    = errors.New("tunnel MTU too small")
	ErrTunnelEncap  = errors.New("invalid tunnel encapsulation")
)

// TunnelConfig describes one tunnel (an encapsulating path to one backend).
type TunnelConfig struct {
	// DstMAC is the next hop's MAC address (the backend's, or the router's towards it);
	// SrcMAC is the egress interface's.
	DstMAC, SrcMAC [6]byte
	// Backend is the outer destination: IPv4 gives IPIP (or 6in4 for an IPv6 packet), IPv6
	// gives IP6IP6 (or IPv4-in-IPv6 for an IPv4 packet).
	Backend netip.Addr
	// Source is the outer source. A full-length prefix (/32, /128) is a fixed address; a
	// shorter one gets a hash of the flow in its host bits (at most 64 of them), so that the
	// backend NIC's RSS spreads the flows over its queues, as Katran does.
	Source netip.Prefix
	// MTU is the egress interface's MTU (IP bytes); 0 means 1500.
	MTU int
	// Encap is the encapsulation: EncapIPIP (the zero value), EncapGUE or EncapFOU.
	Encap TunnelEncap
	// Port is the outer UDP destination port of EncapGUE and EncapFOU; 0 means
	// DefaultGUEPort. Must be 0 for EncapIPIP.
	Port uint16
}

// Tunnel encapsulates packets towards one backend. Build it once with NewTunnel, off the hot
// path (the zero Tunnel refuses to encapsulate, with NoTunnel); Encap then only reads it, so one
// Tunnel may serve many workers.
type Tunnel struct {
	dstMAC, srcMAC [6]byte
	v6             bool
	hdrLen         int    // outer IP header: 20 or 40
	port           uint16 // GUE/FOU: outer UDP destination port
	udpLen         int    // outer UDP (and GUE) header behind it: 0 (IPIP), 8 (FOU) or 12 (GUE)
	src, dst       [16]byte
	hostBits       int
	mtu            int
	// tmpl is the Ethernet header and the outer IP header with their constant fields (MACs,
	// EtherType, version, TTL, addresses); tmplSum is the IPv4 template's ones' complement sum
	// (without the source address when it varies per flow).
	tmpl    [14 + 40 + 12]byte
	tmplSum uint64
	// ipip4 is set for plain IPIP from an IPv4 source; words then holds tmpl's bytes 0-7,
	// 6-13 and 26-33 (the MACs and EtherType, the outer addresses: the source zero when
	// it varies per flow), so that encap44 writes an IPv4 packet's headers as five word
	// stores.
	ipip4 bool
	words [3]uint64
}

// NewTunnel checks c and precomputes the outer headers' constant parts.
func NewTunnel(c TunnelConfig) (Tunnel, error) {
	var t Tunnel
	if !c.Backend.IsValid() || !c.Source.IsValid() {
		return t, ErrTunnelAddr
	}
	b, s := c.Backend.Unmap(), c.Source.Masked()
	if b.Is6() != s.Addr().Is6() {
		return t, fmt.Errorf("backend %s, source %s: %w", b, s, ErrTunnelFamily)
	}
	t.dstMAC, t.srcMAC = c.DstMAC, c.SrcMAC
	t.v6 = b.Is6()
	t.hdrLen = 20
	if t.v6 {
		t.hdrLen = 40
		t.src, t.dst = s.Addr().As16(), b.As16()
	} else {
		a, d := s.Addr().As4(), b.As4()
		copy(t.src[:], a[:])
		copy(t.dst[:], d[:])
	}
	t.hostBits = c.Source.Addr().BitLen() - s.Bits()
	if t.hostBits > 64 {
		t.hostBits = 64
	}
	if t.hostBits == 0 {
		if t.v6 {
			t.src = c.Source.Addr().As16()
		} else {
			a := c.Source.Addr().As4()
			copy(t.src[:], a[:])
		}
	}
	t.mtu = c.MTU
	if t.mtu == 0 {
		t.mtu = 1500
	}
	if err := t.setUDP(c.Encap, c.Port); err != nil {
		return t, err
	}
	t.fillTemplate()
	if t.ipip4 = !t.v6 && t.udpLen == 0; t.ipip4 {
		for i, o := range [3]int{0, 6, 26} {
			t.words[i] = binary.LittleEndian.Uint64(t.tmpl[o : o+8])
		}
	}
	minMTU := 68 + t.Overhead()
	if t.v6 {
		minMTU = 1280
	}
	if t.mtu < minMTU || t.mtu > 65535 {
		return t, fmt.Errorf("mtu %d (need %d..65535): %w", t.mtu, minMTU, ErrTunnelMTU)
	}
	return t, nil
}

// Overhead returns the bytes the outer headers add: the IP header (20 or 40), and for GUE
// and FOU the UDP header (8) and the GUE header (4).
func (t *Tunnel) Overhead() int { return t.hdrLen + t.udpLen }

// Encap encapsulates the packet p (parsed from buf[off:off+n]) in an outer IP header written
// into the headroom in front of the inner IP header, which does not move, and writes a new
// untagged Ethernet header in front of it. It returns the new frame's (off, n) and OK; the
// Ethernet padding of the original frame, if any, is dropped. Outer TTL is 64, the outer
// TOS/traffic class is the inner one, an IPv4 outer header copies DF from an inner IPv4 header
// (and sets it for an inner IPv6 packet) and gets a correct checksum; an IPv6 outer header
// gets a flow label from the flow's hash. p is left as it was (it still describes the inner
// packet, at its old offsets from off). With EncapGUE or EncapFOU a UDP header (and the GUE
// header) follows the outer IP header, its source port from the flow's hash (see TunnelEncap).
//
// When the result would exceed the MTU, an inner IPv6 packet or IPv4 packet with DF is turned
// into the ICMPv6 "packet too big" or ICMP "fragmentation needed" reply (see ICMPTooBig, with
// MTU - Overhead()) and ReplyICMP is returned; otherwise TooBig, and the caller drops the frame.
func (t *Tunnel) Encap(buf []byte, off, n int, p *Packet) (int, int, Reason) {
	if !t.ipip4 || p.IPVersion != 4 {
		return t.encap(buf, off, n, p)
	}
	// Plain IPIP from an IPv4 source of an IPv4 packet, the common case: the template's
	// words, then the variable fields, version to fragment field in one word, TTL to
	// checksum in another (and the source's host bits in the addresses' word). It reads
	// no byte of the inner packet, only p's fields, so of consistent's checks it makes
	// those that keep the new frame inside buf and its length right.
	inner := p.TotalLen
	if off < 0 || n < 0 || off+n > len(buf) || p.L3Off != 14 && p.L3Off != 18 ||
		inner < 20 || inner != p.IPEnd-p.L3Off || p.IPEnd > n {
		return off, n, Truncated
	}
	if inner+20 > t.mtu {
		return ICMPTooBig(buf, off, n, p, t.mtu-20)
	}
	ip := off + p.L3Off
	start := ip - 34
	if start < 0 {
		return off, n, NoHeadroom
	}
	f := (*[34]byte)(buf[start:ip])
	var frag uint64
	if p.DF {
		frag = 0x4000
	}
	tot := uint64(20 + inner)
	// tmplSum is folded to 16 bits: the sum stays under 2^32 (the source's host bits are
	// added as their two halves) and folds in two steps.
	sum := t.tmplSum + uint64(p.TOS) + tot + uint64(uint16(p.IPID)) + frag + ProtoIPIP
	addrs := t.words[2]
	if t.hostBits > 0 {
		src := t.src
		setHostBits(&src, false, t.hostBits, flowHash(&p.Key))
		s := binary.BigEndian.Uint32(src[0:4])
		sum += uint64(s>>16) + uint64(s&0xffff)
		addrs |= uint64(binary.LittleEndian.Uint32(src[0:4]))
	}
	binary.LittleEndian.PutUint64(f[0:8], t.words[0])
	binary.LittleEndian.PutUint64(f[6:14], t.words[1])
	binary.BigEndian.PutUint64(f[14:22], 0x45<<56|uint64(p.TOS)<<48|tot<<32|uint64(uint16(p.IPID))<<16|frag)
	binary.BigEndian.PutUint32(f[22:26], outerTTL<<24|ProtoIPIP<<16|uint32(^fold32(sum)))
	binary.LittleEndian.PutUint64(f[26:34], addrs)
	return start, 34 + inner, OK
}

// encap is Encap for every other case: IPv6 outer headers, GUE and FOU, an IPv6 packet in
// IPv4, and the zero Tunnel.
func (t *Tunnel) encap(buf []byte, off, n int, p *Packet) (int, int, Reason) {
	if t.hdrLen == 0 {
		return off, n, NoTunnel
	}
	if off < 0 || n < 0 || off+n > len(buf) || !p.consistent(n) {
		return off, n, Truncated
	}
	ov := t.Overhead()
	inner := p.TotalLen
	if inner+ov > t.mtu {
		return ICMPTooBig(buf, off, n, p, t.mtu-ov)
	}
	ip := off + p.L3Off
	start := ip - ov - 14
	if start < 0 {
		return off, n, NoHeadroom
	}
	f := buf[start:ip]
	copy(f, t.tmpl[:14+ov])
	proto := uint8(ProtoIPIP)
	if p.IPVersion == 6 {
		proto = ProtoIPv6
	}
	innerProto := proto
	if t.udpLen > 0 {
		proto = ProtoUDP
	}
	h := f[14:]
	var hash uint64
	if t.v6 || t.hostBits > 0 || t.udpLen > 0 {
		hash = flowHash(&p.Key)
	}
	if t.v6 {
		binary.BigEndian.PutUint32(h[0:4], 6<<28|uint32(p.TOS)<<20|uint32(hash>>32)&0xfffff)
		binary.BigEndian.PutUint16(h[4:6], uint16(t.udpLen+inner))
		h[6] = proto
		if t.hostBits > 0 {
			src := t.src
			setHostBits(&src, true, t.hostBits, hash)
			copy(h[8:24], src[:])
		}
		if t.udpLen > 0 {
			t.fillUDP(h[40:], h[8:24], h[24:40], buf[ip:ip+inner], p, innerProto, hash)
		}
		return start, 14 + ov + inner, OK
	}
	var id, frag uint16
	if p.IPVersion == 4 {
		id = uint16(p.IPID)
		if p.DF {
			frag = 0x4000
		}
	} else {
		frag = 0x4000
	}
	tot := uint16(20 + t.udpLen + inner)
	h[1] = p.TOS
	binary.BigEndian.PutUint16(h[2:4], tot)
	binary.BigEndian.PutUint16(h[4:6], id)
	binary.BigEndian.PutUint16(h[6:8], frag)
	h[9] = proto
	sum := t.tmplSum + uint64(p.TOS) + uint64(tot) + uint64(id) + uint64(frag) + uint64(proto)
	if t.hostBits > 0 {
		src := t.src
		setHostBits(&src, false, t.hostBits, hash)
		copy(h[12:16], src[:4])
		sum += uint64(binary.BigEndian.Uint32(src[0:4]))
	}
	binary.BigEndian.PutUint16(h[10:12], ^fold64(sum, 0))
	if t.udpLen > 0 {
		t.fillUDP(h[20:], h[12:16], h[16:20], buf[ip:ip+inner], p, innerProto, hash)
	}
	return start, 14 + ov + inner, OK
}

// outerTTL is the outer header's TTL (hop limit).
const outerTTL = 64

// fillTemplate precomputes the constant part of the headers Encap writes.
func (t *Tunnel) fillTemplate() {
	f := t.tmpl[:]
	copy(f[0:6], t.dstMAC[:])
	copy(f[6:12], t.srcMAC[:])
	h := f[14:]
	if t.v6 {
		binary.BigEndian.PutUint16(f[12:14], EtherTypeIPv6)
		h[0] = 6 << 4
		h[7] = outerTTL
		copy(h[8:24], t.src[:])
		copy(h[24:40], t.dst[:])
		t.fillUDPTemplate(h[40:])
		return
	}
	binary.BigEndian.PutUint16(f[12:14], EtherTypeIPv4)
	h[0] = 0x45
	h[8] = outerTTL
	copy(h[16:20], t.dst[:4])
	if t.hostBits == 0 {
		copy(h[12:16], t.src[:4])
	}
	t.fillUDPTemplate(h[20:])
	// The variable fields (TOS, length, id, flags, protocol, checksum) are zero here. The
	// sum is kept folded to 16 bits, so encap44's per-packet sum stays under 2^32.
	t.tmplSum = uint64(fold64(uint64(binary.BigEndian.Uint32(h[0:4]))+uint64(binary.BigEndian.Uint32(h[8:12]))+
		uint64(binary.BigEndian.Uint32(h[12:16]))+uint64(binary.BigEndian.Uint32(h[16:20])), 0))
}

// setHostBits puts the low bits of hash into the low bits host bits of a (a 4- or 16-byte
// address). For IPv4 it avoids the all-zeros and all-ones hosts of the prefix.
func setHostBits(a *[16]byte, v6 bool, bits int, hash uint64) {
	mask := uint64(1)<<bits - 1
	if bits == 64 {
		mask = ^uint64(0)
	}
	host := hash & mask
	if !v6 {
		if bits >= 2 {
			if host == 0 {
				host = 1
			} else if host == mask {
				host = mask - 1
			}
		}
		v := binary.BigEndian.Uint32(a[0:4])
		v = v&^uint32(mask) | uint32(host)
		binary.BigEndian.PutUint32(a[0:4], v)
		return
	}
	v := binary.BigEndian.Uint64(a[8:16])
	v = v&^mask | host
	binary.BigEndian.PutUint64(a[8:16], v)
}

// flowHash is a cheap, well-mixed 64-bit hash of the key (not sched.Hash: it only has to
// spread flows over outer source addresses and flow labels).
func flowHash(k *FlowKey) uint64 {
	const m = 0x9E3779B97F4A7C15
	h := binary.LittleEndian.Uint64(k.Src[0:8])
	if k.V6 {
		h = (h ^ binary.LittleEndian.Uint64(k.Src[8:16])) * m
		h = (h ^ binary.LittleEndian.Uint64(k.Dst[0:8])) * m
		h ^= binary.LittleEndian.Uint64(k.Dst[8:16])
	} else { // the rest of an IPv4 key's addresses is zero
		h |= uint64(binary.LittleEndian.Uint32(k.Dst[0:4])) << 32
	}
	h = (h ^ (uint64(k.SrcPort)<<16 | uint64(k.DstPort) | uint64(k.Proto)<<32)) * m
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>32
}
