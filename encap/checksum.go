package encap

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the 16-bit ones' complement sum (RFC 1071) of b, added to initial. It is the
// sum, not its complement: the checksum field holds ^Checksum(...). An odd trailing byte is
// padded with zero, so only the last slice of a multi-part sum may have an odd length.
func Checksum(b []byte, initial uint16) uint16 {
	var s0, s1, carry uint64
	s0 = uint64(initial)
	var c uint64
	for len(b) >= 32 {
		s0, c = bits.Add64(s0, binary.BigEndian.Uint64(b[0:8]), 0)
		carry += c
		s1, c = bits.Add64(s1, binary.BigEndian.Uint64(b[8:16]), 0)
		carry += c
		s0, c = bits.Add64(s0, binary.BigEndian.Uint64(b[16:24]), 0)
		carry += c
		s1, c = bits.Add64(s1, binary.BigEndian.Uint64(b[24:32]), 0)
		carry += c
		b = b[32:]
	}
	for len(b) >= 8 {
		s0, c = bits.Add64(s0, binary.BigEndian.Uint64(b[0:8]), 0)
		carry += c
		b = b[8:]
	}
	var tail uint64
	if len(b) >= 4 {
		tail = uint64(binary.BigEndian.Uint32(b[0:4])) << 32
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(binary.BigEndian.Uint16(b[0:2])) << 16
		b = b[2:]
	}
	if len(b) == 1 {
		tail += uint64(b[0]) << 8
	}
	s0, c = bits.Add64(s0, tail, 0)
	carry += c
	s0, c = bits.Add64(s0, s1, 0)
	carry += c
	// 2^64 = 1 in ones' complement arithmetic mod 0xffff, so the carries add back in.
	return fold64(s0, carry)
}

// fold64 folds s + carry (carry counting 2^64 units) down to 16 bits with end-around carry.
func fold64(s, carry uint64) uint16 {
	x := (s >> 32) + (s & 0xffffffff) + carry // < 2^34
	x = (x >> 16) + (x & 0xffff)
	x = (x >> 16) + (x & 0xffff)
	x = (x >> 16) + (x & 0xffff)
	return uint16(x)
}

// fold48 is fold64 for a sum under 2^48 (a few 16- and 32-bit words): three folding steps
// instead of four and no carry. The first leaves under 2^32 + 2^16, the second under 2^17,
// the third at most 0xffff.
func fold48(s uint64) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// fold32 is fold64 for a sum under 2^32 (a handful of 16-bit words): two folding steps.
// The first leaves at most 0x1fffe, the second at most 0xffff.
func fold32(s uint64) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// ChecksumCombine adds two ones' complement sums.
func ChecksumCombine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// PseudoHeaderChecksum returns the ones' complement sum of the TCP/UDP/ICMPv6 pseudo-header
// (RFC 793 for IPv4 with 4-byte addresses, RFC 8200 for IPv6 with 16-byte ones).
func PseudoHeaderChecksum(proto uint8, src, dst []byte, l4Len int) uint16 {
	s := Checksum(src, 0)
	s = Checksum(dst, s)
	s = ChecksumCombine(s, uint16(proto))
	s = ChecksumCombine(s, uint16(l4Len>>16))
	return ChecksumCombine(s, uint16(l4Len))
}

// ChecksumUpdate16 returns the checksum field value xsum updated for one 16-bit word of the
// covered data changing from old to new (RFC 1624, equation 3: HC' = ~(~HC + ~m + m')).
func ChecksumUpdate16(xsum, old, new uint16) uint16 {
	return ^ChecksumCombine(ChecksumCombine(^xsum, ^old), new)
}

// ChecksumUpdate returns the checksum field value xsum updated for the covered bytes old
// changing to new (equal, even lengths, starting at an even offset of the covered data).
func ChecksumUpdate(xsum uint16, old, new []byte) uint16 {
	return checksumAdjust(xsum, checksumDelta(old, new))
}

// checksumDelta returns the ones' complement sum of ~old and new, word by word: what an update
// from old to new adds to every checksum that covers those bytes.
func checksumDelta(old, new []byte) uint16 {
	n := min(len(old), len(new)) &^ 1
	var s uint64
	i := 0
	for ; i+4 <= n; i += 4 { // addresses: a 32-bit word is two 16-bit words, folded later
		s += uint64(^binary.BigEndian.Uint32(old[i:])) + uint64(binary.BigEndian.Uint32(new[i:]))
	}
	for ; i < n; i += 2 {
		s += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return fold64(s, 0)
}

// checksumAdjust applies a delta from checksumDelta to the checksum field value xsum.
func checksumAdjust(xsum, delta uint16) uint16 {
	return ^ChecksumCombine(^xsum, delta)
}

// ipv4HeaderSum returns the ones' complement sum of a 20-byte IPv4 header.
func ipv4HeaderSum(h []byte) uint16 {
	_ = h[19]
	s := uint64(binary.BigEndian.Uint32(h[0:4])) + uint64(binary.BigEndian.Uint32(h[4:8])) +
		uint64(binary.BigEndian.Uint32(h[8:12])) + uint64(binary.BigEndian.Uint32(h[12:16])) +
		uint64(binary.BigEndian.Uint32(h[16:20]))
	return fold64(s, 0)
}
