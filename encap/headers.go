package encap

import "encoding/binary"

// IPv4 is a view of an IPv4 header (RFC 791). Accessors assume the view holds at least 20
// bytes (the whole header for HeaderLen-dependent ones): take it from a packet Parse accepted.
//
//	 0                   1                   2                   3
//	|Version|  IHL  |Type of Service|          Total Length         |  0
//	|         Identification        |Flags|      Fragment Offset    |  4
//	|  Time to Live |    Protocol   |         Header Checksum       |  8
//	|                       Source Address                          | 12
//	|                    Destination Address                        | 16
type IPv4 []byte

// HeaderLen returns the header length in bytes (IHL * 4).
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TotalLen returns the total length field.
func (h IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(h[2:4]) }

// Protocol returns the protocol field.
func (h IPv4) Protocol() uint8 { return h[9] }

// TTL returns the time to live.
func (h IPv4) TTL() uint8 { return h[8] }

// Src returns the source address.
func (h IPv4) Src() [4]byte { return [4]byte(h[12:16]) }

// Dst returns the destination address.
func (h IPv4) Dst() [4]byte { return [4]byte(h[16:20]) }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[10:12]) }

// SetChecksum sets the header checksum field.
func (h IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[10:12], v) }

// ComputeChecksum returns the header checksum computed from scratch (with the field as zero).
func (h IPv4) ComputeChecksum() uint16 {
	n := h.HeaderLen()
	s := Checksum(h[0:10], 0)
	return ^Checksum(h[12:n], s)
}

// SetSrcWithChecksumUpdate sets the source address and updates the header checksum
// incrementally (RFC 1624). Transport checksums are the caller's: see TCP/UDP
// UpdatePseudoHeaderAddress.
func (h IPv4) SetSrcWithChecksumUpdate(a [4]byte) { h.setAddr(12, a) }

// SetDstWithChecksumUpdate sets the destination address and updates the header checksum.
func (h IPv4) SetDstWithChecksumUpdate(a [4]byte) { h.setAddr(16, a) }

func (h IPv4) setAddr(off int, a [4]byte) {
	h.SetChecksum(ChecksumUpdate(h.Checksum(), h[off:off+4], a[:]))
	copy(h[off:off+4], a[:])
}

// IPv6 is a view of an IPv6 fixed header (RFC 8200), at least 40 bytes.
type IPv6 []byte

// PayloadLen returns the payload length field.
func (h IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(h[4:6]) }

// NextHeader returns the next header field.
func (h IPv6) NextHeader() uint8 { return h[6] }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[7] }

// Src returns the source address.
func (h IPv6) Src() [16]byte { return [16]byte(h[8:24]) }

// Dst returns the destination address.
func (h IPv6) Dst() [16]byte { return [16]byte(h[24:40]) }

// SetSrc sets the source address (IPv6 has no header checksum; fix the transport checksum
// with UpdatePseudoHeaderAddress).
func (h IPv6) SetSrc(a [16]byte) { copy(h[8:24], a[:]) }

// SetDst sets the destination address.
func (h IPv6) SetDst(a [16]byte) { copy(h[24:40], a[:]) }

// TCP is a view of a TCP header (RFC 793), at least 20 bytes.
type TCP []byte

// SrcPort returns the source port.
func (h TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[0:2]) }

// DstPort returns the destination port.
func (h TCP) DstPort() uint16 { return binary.BigEndian.Uint16(h[2:4]) }

// Flags returns the flags byte (TCPFlagSYN, ...).
func (h TCP) Flags() uint8 { return h[13] }

// Checksum returns the checksum field.
func (h TCP) Checksum() uint16 { return binary.BigEndian.Uint16(h[16:18]) }

// SetChecksum sets the checksum field.
func (h TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[16:18], v) }

// SetSrcPortWithChecksumUpdate sets the source port and updates the checksum (RFC 1624).
func (h TCP) SetSrcPortWithChecksumUpdate(port uint16) { setPort(h, 0, 16, port, false) }

// SetDstPortWithChecksumUpdate sets the destination port and updates the checksum.
func (h TCP) SetDstPortWithChecksumUpdate(port uint16) { setPort(h, 2, 16, port, false) }

// UpdatePseudoHeaderAddress updates the checksum for a pseudo-header address that changes
// from old to new (4 or 16 bytes each), as when NAT rewrites the IP header.
func (h TCP) UpdatePseudoHeaderAddress(old, new []byte) {
	h.SetChecksum(ChecksumUpdate(h.Checksum(), old, new))
}

// UDP is a view of a UDP header (RFC 768), 8 bytes. A checksum of 0 means "none" (IPv4): the
// update methods leave it 0, and write 0xffff for a computed 0.
type UDP []byte

// SrcPort returns the source port.
func (h UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(h[0:2]) }

// DstPort returns the destination port.
func (h UDP) DstPort() uint16 { return binary.BigEndian.Uint16(h[2:4]) }

// Length returns the length field.
func (h UDP) Length() uint16 { return binary.BigEndian.Uint16(h[4:6]) }

// Checksum returns the checksum field.
func (h UDP) Checksum() uint16 { return binary.BigEndian.Uint16(h[6:8]) }

// SetChecksum sets the checksum field.
func (h UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[6:8], v) }

// SetSrcPortWithChecksumUpdate sets the source port and updates a non-zero checksum.
func (h UDP) SetSrcPortWithChecksumUpdate(port uint16) { setPort(h, 0, 6, port, true) }

// SetDstPortWithChecksumUpdate sets the destination port and updates a non-zero checksum.
func (h UDP) SetDstPortWithChecksumUpdate(port uint16) { setPort(h, 2, 6, port, true) }

// UpdatePseudoHeaderAddress updates a non-zero checksum for a pseudo-header address change.
func (h UDP) UpdatePseudoHeaderAddress(old, new []byte) {
	if c := h.Checksum(); c != 0 {
		h.SetChecksum(udpNonZero(ChecksumUpdate(c, old, new)))
	}
}

func setPort(h []byte, off, csumOff int, port uint16, udp bool) {
	old := binary.BigEndian.Uint16(h[off : off+2])
	binary.BigEndian.PutUint16(h[off:off+2], port)
	c := binary.BigEndian.Uint16(h[csumOff : csumOff+2])
	if udp {
		if c == 0 {
			return
		}
		binary.BigEndian.PutUint16(h[csumOff:csumOff+2], udpNonZero(ChecksumUpdate16(c, old, port)))
		return
	}
	binary.BigEndian.PutUint16(h[csumOff:csumOff+2], ChecksumUpdate16(c, old, port))
}

// udpNonZero maps a computed UDP checksum of 0 to 0xffff (RFC 768: 0 means "no checksum").
func udpNonZero(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}
