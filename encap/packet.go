package encap

import "encoding/binary"

// FlowKey identifies a flow. It is pinned in docs/CONTRACTS.md: sched.Key declares the very
// same fields, and the dataplane converts with sched.Key(p.Key). Do not add, rename or reorder.
type FlowKey struct {
	Src     [16]byte // IPv4: the address in Src[0:4], the rest zero
	Dst     [16]byte
	SrcPort uint16 // host byte order; 0 for IP fragments (3-tuple) and for ICMP
	DstPort uint16
	Proto   uint8 // L4 protocol number after IPv6 extension headers
	V6      bool
}

// EtherTypes and IP protocol numbers used by the package.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86DD
	EtherTypeVLAN = 0x8100

	ProtoICMP   = 1
	ProtoIPIP   = 4 // IPv4 encapsulated (IPIP, IPv4-in-IPv6)
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoIPv6   = 41 // IPv6 encapsulated (IP6IP6)
	ProtoICMPv6 = 58
)

// TCP flag bits, as in Packet.TCPFlags.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
)

// MaxExtHeaders bounds how many IPv6 extension headers Parse walks (in the packet and in the
// packet an ICMPv6 error quotes) before it gives up with TooManyExtHeaders.
const MaxExtHeaders = 8

// Packet is what Parse learns about one packet. Offsets count from the first byte of the
// packet (the Ethernet destination MAC), not from the start of the frame buffer. Keep one per
// worker and pass it to Parse for every packet: Parse resets it in place. Not safe for
// concurrent use.
type Packet struct {
	// Key is the flow key the scheduler hashes; for an ICMP error, the key of the quoted
	// packet reversed (so it matches the flow that caused the error).
	Key FlowKey

	L3Off int // offset of the IP header (14, or 18 behind an 802.1Q tag)
	L4Off int // offset of the L4 header, after IPv4 options or IPv6 extension headers
	// L4Proto is the protocol of the header at L4Off. It equals Key.Proto except for an ICMP
	// error, whose key carries the protocol of the quoted packet.
	L4Proto uint8
	IPEnd   int // offset one past the IP packet's last byte; Ethernet padding may follow it

	EtherType uint16 // EtherTypeIPv4 or EtherTypeIPv6 (the one behind the VLAN tag)
	VLANTCI   uint16 // the 802.1Q tag control information, when Tagged
	Tagged    bool   // the frame carries one 802.1Q tag

	IPVersion uint8  // 4 or 6
	TTL       uint8  // IPv4 TTL or IPv6 hop limit
	TOS       uint8  // IPv4 type of service or IPv6 traffic class (DSCP and ECN)
	DF        bool   // IPv4 "don't fragment" (IPv6: always false; routers never fragment it)
	TotalLen  int    // IP total length in bytes (IPv6: 40 + payload length)
	IPID      uint32 // IPv4 identification, or the IPv6 fragment header's identification

	// Fragment is set for every fragment of a fragmented datagram (the first one too), whose
	// key then carries no ports. FragOffset is in bytes; a first fragment has 0.
	Fragment   bool
	FragOffset int

	// HasL4 reports that the whole TCP, UDP, ICMP or ICMPv6 header lies at L4Off (false for a
	// non-first fragment and for other protocols).
	HasL4    bool
	TCPFlags uint8 // the TCP flags byte (TCPFlagSYN, ...), 0 for other protocols

	ICMPType uint8
	ICMPCode uint8
	// ICMPError: an ICMP or ICMPv6 error (destination unreachable incl. fragmentation needed,
	// packet too big, time exceeded, parameter problem) whose quoted packet starts at InnerL3Off;
	// InnerL4Off is the quoted packet's L4 header (0 if the quote stops before its first 8
	// bytes, or if the quoted packet is a non-first fragment, which has none).
	ICMPError  bool
	InnerL3Off int
	InnerL4Off int
}

// consistent reports whether p's offsets describe an IP packet inside a packet of n bytes, as
// Parse leaves them, so that functions handed a stale or foreign Packet fail instead of
// indexing out of range.
func (p *Packet) consistent(n int) bool {
	hdr := 20
	if p.IPVersion == 6 {
		hdr = 40
	} else if p.IPVersion != 4 {
		return false
	}
	need := 0
	if p.HasL4 {
		need = 8
		if p.L4Proto == ProtoTCP {
			need = 20
		}
	}
	if !p.framed(n, hdr, need) {
		return false
	}
	if p.ICMPError {
		if p.InnerL3Off != p.L4Off+8 || p.IPEnd < p.InnerL3Off+hdr {
			return false
		}
		if p.InnerL4Off != 0 && (p.InnerL4Off < p.InnerL3Off+hdr || p.IPEnd < p.InnerL4Off+8) {
			return false
		}
	}
	return true
}

// framed reports whether p's offsets fit a packet of n bytes: the IP header (hdr bytes)
// after an Ethernet header with or without one VLAN tag, the L4 header (need bytes) after
// it, and the IP packet's end where its total length says and inside the n bytes. The
// check consistent makes of every packet, and the IPv4 NAT's fast path of its own.
func (p *Packet) framed(n, hdr, need int) bool {
	return (p.L3Off == 14 || p.L3Off == 18) && p.L4Off >= p.L3Off+hdr && p.IPEnd >= p.L4Off+need &&
		p.IPEnd <= n && p.TotalLen == p.IPEnd-p.L3Off
}

// SYN, FIN, RST and ACK report the TCP flags of a TCP packet.
func (p *Packet) SYN() bool { return p.TCPFlags&TCPFlagSYN != 0 }

// FIN reports the TCP FIN flag.
func (p *Packet) FIN() bool { return p.TCPFlags&TCPFlagFIN != 0 }

// RST reports the TCP RST flag.
func (p *Packet) RST() bool { return p.TCPFlags&TCPFlagRST != 0 }

// ACK reports the TCP ACK flag.
func (p *Packet) ACK() bool { return p.TCPFlags&TCPFlagACK != 0 }

// Parse parses the Ethernet frame pkt (the packet bytes of an AF_XDP frame, buf[off:off+n])
// into p, which it resets first. It returns OK or the reason the packet is malformed; on a
// non-OK result p holds what was learnt so far and must not be used to forward. Parse does not
// verify checksums (rewrites preserve a bad checksum, so the receiver still drops the packet).
func Parse(pkt []byte, p *Packet) Reason {
	if ParseCommon(pkt, p) {
		return OK
	}
	return parse(pkt, p)
}

// ParseCommon is Parse's short path, which a caller with many frames may call first and
// fall back to Parse when it reports false (saving Parse's call on the common frames). It
// parses, in one function without calls, the frames a load balancer mostly sees: untagged
// IPv4 without options that is not a fragment, or untagged IPv6 without extension headers,
// carrying a TCP or UDP header that fits. For any other frame, malformed ones included, it
// reports false and leaves p for Parse, which resets it. For the frames it takes it leaves p
// exactly as Parse would (FuzzParseCommon checks that).
func ParseCommon(pkt []byte, p *Packet) bool {
	var l4, end int // the L4 header's offset, the IP packet's end
	var proto uint8
	if len(pkt) < 14+20 {
		return false
	}
	switch et := binary.BigEndian.Uint16(pkt[12:14]); {
	case et == EtherTypeIPv4 && pkt[14] == 0x45: // version 4, no options
		tot := int(binary.BigEndian.Uint16(pkt[16:18]))
		if tot < 20 || tot > len(pkt)-14 || binary.BigEndian.Uint16(pkt[20:22])&0x3fff != 0 {
			return false // short, or a fragment
		}
		l4, end, proto = 14+20, 14+tot, pkt[14+9]
	case et == EtherTypeIPv6 && len(pkt) >= 14+40 && pkt[14]>>4 == 6:
		plen := int(binary.BigEndian.Uint16(pkt[18:20]))
		if plen == 0 || plen > len(pkt)-14-40 {
			return false
		}
		l4, end, proto = 14+40, 14+40+plen, pkt[14+6]
	default:
		return false
	}
	seg := pkt[l4:end]
	var flags uint8
	switch proto {
	case ProtoTCP:
		if len(seg) < 20 {
			return false
		}
		if doff := int(seg[12]>>4) * 4; doff < 20 || doff > len(seg) {
			return false
		}
		flags = seg[13]
	case ProtoUDP:
		if len(seg) < 8 {
			return false
		}
		if ulen := int(binary.BigEndian.Uint16(seg[4:6])); ulen < 8 || ulen > len(seg) {
			return false
		}
	default:
		return false
	}
	// Zeroed in place, then the fields one by one: a literal with fields would be built on
	// the stack and copied.
	*p = Packet{}
	p.Key.SrcPort = binary.BigEndian.Uint16(seg[0:2])
	p.Key.DstPort = binary.BigEndian.Uint16(seg[2:4])
	p.Key.Proto = proto
	p.L3Off, p.L4Off, p.L4Proto, p.IPEnd = 14, l4, proto, end
	p.HasL4, p.TCPFlags = true, flags
	h := pkt[14:l4]
	if l4 == 14+20 {
		p.EtherType, p.IPVersion, p.TotalLen = EtherTypeIPv4, 4, end-14
		p.TOS, p.TTL = h[1], h[8]
		p.IPID = uint32(binary.BigEndian.Uint16(h[4:6]))
		p.DF = h[6]&0x40 != 0
		*(*[4]byte)(p.Key.Src[:4]) = [4]byte(h[12:16])
		*(*[4]byte)(p.Key.Dst[:4]) = [4]byte(h[16:20])
		return true
	}
	p.EtherType, p.IPVersion, p.TotalLen = EtherTypeIPv6, 6, end-14
	p.TOS, p.TTL = uint8(binary.BigEndian.Uint16(h[0:2])>>4), h[7]
	p.Key.V6 = true
	p.Key.Src = [16]byte(h[8:24])
	p.Key.Dst = [16]byte(h[24:40])
	return true
}

// parse is Parse for every frame: it resets p and parses the frame layer by layer.
func parse(pkt []byte, p *Packet) Reason {
	*p = Packet{}
	if len(pkt) < 14 {
		return Truncated
	}
	l3 := 14
	et := binary.BigEndian.Uint16(pkt[12:14])
	if et == EtherTypeVLAN {
		if len(pkt) < 18 {
			return Truncated
		}
		p.Tagged = true
		p.VLANTCI = binary.BigEndian.Uint16(pkt[14:16])
		et = binary.BigEndian.Uint16(pkt[16:18])
		l3 = 18
	}
	p.EtherType = et
	p.L3Off = l3
	switch et {
	case EtherTypeIPv4:
		return p.parseIPv4(pkt)
	case EtherTypeIPv6:
		return p.parseIPv6(pkt)
	}
	return UnknownEtherType
}

func (p *Packet) parseIPv4(pkt []byte) Reason {
	l3 := p.L3Off
	if len(pkt) < l3+20 {
		return Truncated
	}
	h := pkt[l3:]
	if h[0]>>4 != 4 {
		return BadVersion
	}
	ihl := int(h[0]&0x0f) * 4
	if ihl < 20 {
		return BadIHL
	}
	tot := int(binary.BigEndian.Uint16(h[2:4]))
	if len(h) < ihl {
		return Truncated
	}
	if tot < ihl || tot > len(h) {
		return BadLength
	}
	p.IPVersion = 4
	p.TOS = h[1]
	p.TotalLen = tot
	p.IPID = uint32(binary.BigEndian.Uint16(h[4:6]))
	frag := binary.BigEndian.Uint16(h[6:8])
	p.DF = frag&0x4000 != 0
	p.FragOffset = int(frag&0x1fff) * 8
	p.Fragment = frag&0x2000 != 0 || p.FragOffset != 0
	p.TTL = h[8]
	p.Key.Proto = h[9]
	p.L4Proto = h[9]
	copy(p.Key.Src[:4], h[12:16])
	copy(p.Key.Dst[:4], h[16:20])
	p.L4Off = l3 + ihl
	p.IPEnd = l3 + tot
	return p.parseL4(pkt)
}

func (p *Packet) parseIPv6(pkt []byte) Reason {
	l3 := p.L3Off
	if len(pkt) < l3+40 {
		return Truncated
	}
	h := pkt[l3:]
	if h[0]>>4 != 6 {
		return BadVersion
	}
	plen := int(binary.BigEndian.Uint16(h[4:6]))
	if plen == 0 || 40+plen > len(h) { // plen 0 would be a jumbogram: not supported
		return BadLength
	}
	p.IPVersion = 6
	p.Key.V6 = true
	p.TOS = uint8(binary.BigEndian.Uint16(h[0:2]) >> 4)
	p.TotalLen = 40 + plen
	p.TTL = h[7]
	copy(p.Key.Src[:], h[8:24])
	copy(p.Key.Dst[:], h[24:40])
	p.IPEnd = l3 + 40 + plen
	switch nh := h[6]; nh {
	case 0, 43, 44, 51, 60: // an extension header (walkExt's list)
		ext, r := walkExt(pkt[:p.IPEnd], l3+40, nh)
		if r != OK {
			return r
		}
		p.Key.Proto = ext.proto
		p.L4Proto = ext.proto
		p.L4Off = ext.l4
		p.Fragment = ext.fragment
		p.FragOffset = ext.fragOff
		p.IPID = ext.fragID
	default: // the common case: the L4 header follows at once
		p.Key.Proto, p.L4Proto, p.L4Off = nh, nh, l3+40
	}
	return p.parseL4(pkt)
}

type extInfo struct {
	l4       int
	proto    uint8
	fragment bool
	fragOff  int
	fragID   uint32
}

// walkExt walks IPv6 extension headers from off (next header nh) within pkt, which ends at
// the end of the IPv6 packet. It stops at the first upper-layer header or, for a non-first
// fragment, behind the fragment header.
func walkExt(pkt []byte, off int, nh uint8) (extInfo, Reason) {
	var e extInfo
	for i := 0; ; i++ {
		switch nh {
		case 0, 43, 44, 51, 60: // hop-by-hop, routing, fragment, AH, destination options
		default:
			e.l4, e.proto = off, nh
			return e, OK
		}
		if i >= MaxExtHeaders {
			return e, TooManyExtHeaders
		}
		if len(pkt) < off+8 { // every extension header is at least 8 bytes long
			return e, Truncated
		}
		if nh == 44 {
			fo := binary.BigEndian.Uint16(pkt[off+2 : off+4])
			e.fragOff = int(fo>>3) * 8
			e.fragID = binary.BigEndian.Uint32(pkt[off+4 : off+8])
			e.fragment = fo&1 != 0 || e.fragOff != 0
			nh = pkt[off]
			off += 8
			if e.fragOff != 0 { // the rest is fragment data, not headers
				e.l4, e.proto = off, nh
				return e, OK
			}
			continue
		}
		var l int
		if nh == 51 {
			l = (int(pkt[off+1]) + 2) * 4
		} else {
			l = (int(pkt[off+1]) + 1) * 8
		}
		if len(pkt) < off+l {
			return e, Truncated
		}
		nh = pkt[off]
		off += l
	}
}
