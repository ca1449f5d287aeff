package sched

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
)

// Key identifies a flow: the field list is exactly encap.FlowKey's (docs/CONTRACTS.md), so
// the dataplane converts with sched.Key(p.Key).
type Key struct {
	Src     [16]byte // IPv4: the address in Src[0:4], the rest zero
	Dst     [16]byte
	SrcPort uint16 // host byte order; 0 for IP fragments (3-tuple) and for ICMP
	DstPort uint16
	Proto   uint8 // L4 protocol number after IPv6 extension headers
	V6      bool
}

// keyBytes is the length of an IPv6 key's canonical byte encoding (the input of
// HashKey.Flow); an IPv4 key's is keyBytes4.
const (
	keyBytes  = 16 + 16 + 2 + 2 + 1 + 1
	keyBytes4 = 4 + 4 + 2 + 2 + 1 + 1
)

// encode writes the key's canonical encoding as IPv6 keys have it: Src, Dst, SrcPort and
// DstPort big-endian, Proto, then 1 for IPv6 or 0.
func (k *Key) encode(b *[keyBytes]byte) {
	copy(b[0:16], k.Src[:])
	copy(b[16:32], k.Dst[:])
	binary.BigEndian.PutUint16(b[32:], k.SrcPort)
	binary.BigEndian.PutUint16(b[34:], k.DstPort)
	b[36] = k.Proto
	b[37] = 0
	if k.V6 {
		b[37] = 1
	}
}

// flowHash is HashKey.Flow under SipHash's key words (k0, k1). An IPv4 key's 14 bytes are
// hashed from two words, without a buffer: 5 SipRounds against the 8 of the 38-byte IPv6
// encoding, which is most of a new IPv4 flow's cost of choosing its Maglev slot.
func (k *Key) flowHash(k0, k1 uint64) uint64 {
	if !k.V6 {
		m := uint64(binary.LittleEndian.Uint32(k.Src[0:4])) | uint64(binary.LittleEndian.Uint32(k.Dst[0:4]))<<32
		tail := uint64(bits.ReverseBytes16(k.SrcPort)) | uint64(bits.ReverseBytes16(k.DstPort))<<16 | uint64(k.Proto)<<32
		return siphash13v4(k0, k1, m, tail)
	}
	var b [keyBytes]byte
	k.encode(&b)
	return siphash13(k0, k1, b[:])
}

// sourceHash is HashKey.Source under SipHash's key words (k0, k1).
func (k *Key) sourceHash(k0, k1 uint64) uint64 {
	if !k.V6 {
		return siphash13(k0, k1, k.Src[:4]) // the last block only: 4 SipRounds against 6
	}
	return siphash13(k0, k1, k.Src[:])
}

// tail packs the fields after the addresses into one word.
func (k *Key) tail() uint64 {
	c := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	if k.V6 {
		c |= 1 << 40
	}
	return c
}

// equal reports whether k and o are the same key: the addresses as two words each, then
// the 8 bytes after them (tailWord). Inlined in the hit path, where a compare per field
// cost four compare-and-branch steps for the ports, Proto and V6 where one does.
func (k *Key) equal(o *Key) bool {
	return k.Src == o.Src && k.Dst == o.Dst && k.tailWord() == o.tailWord()
}

// tableSecret keys a Core's connection-table hash. Drawn at random for every Core, so
// nobody outside the process can compute which buckets a flow lands in and aim a flood of
// crafted tuples at the buckets of a live flow.
type tableSecret [6]uint64

func newTableSecret() tableSecret {
	var b [48]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (it crashes the program if it must)
	var s tableSecret
	for i := range s {
		// Odd, so never 0: a zero word would zero its product (a key word may be 0, as
		// the first word of ::ffff:a.b.c.d is, so each mum relies on its secret word).
		s[i] = binary.LittleEndian.Uint64(b[8*i:]) | 1
	}
	return s
}

// mum is the multiply-fold step of wyhash: the 128-bit product of a and b, folded to 64 bits.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash is the connection-table hash of k. An IPv6 key is read as five words (both
// addresses as two words each, ports, protocol and family as the fifth), each pair xored
// with secret words and multiplied-and-folded (wyhash's construction), then mixed by
// fmix64; about 4 ns. An IPv4 key's addresses are the low halves of their first words (the
// rest of Src and Dst is zero), so they make one word and the key takes one
// multiply-fold instead of three: about 3 ns. It serves only this process's table; the
// backend choice uses the cluster-wide HashKey.
func (s *tableSecret) hash(k *Key) uint64 {
	a0 := binary.LittleEndian.Uint64(k.Src[0:8])
	b0 := binary.LittleEndian.Uint64(k.Dst[0:8])
	c := k.tail()
	if !k.V6 {
		return fmix64(mum(a0|b0<<32^s[0], c^s[5]))
	}
	a1 := binary.LittleEndian.Uint64(k.Src[8:16])
	b1 := binary.LittleEndian.Uint64(k.Dst[8:16])
	h := mum(a0^s[0], a1^s[1]) ^ mum(b0^s[2], b1^s[3])
	return fmix64(mum(h^s[4], c^s[5]))
}

// fmix64 is MurmurHash3's finalizer: a bijection in which every input bit moves every
// output bit. Without it, keys that differ only in the port (a client's connections) give
// products that differ in a regular pattern, and for some secrets that pattern crowds their
// high bits, which pick the bucket, into a few values.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
