package sched

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
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

// keyBytes is the length of a Key's canonical byte encoding (the input of Hash).
const keyBytes = 16 + 16 + 2 + 2 + 1 + 1

// Hash returns the xxhash (seed 0) of the key's canonical encoding: Src, Dst, SrcPort and
// DstPort big-endian, Proto, then 1 for IPv6 or 0. Every LB host computes the same value for
// the same flow, which is what lets a standby send existing flows where the master did.
// Fragments carry ports 0, so every fragment of a datagram hashes alike. It does not allocate.
func Hash(k *Key) uint64 {
	var b [keyBytes]byte
	copy(b[0:16], k.Src[:])
	copy(b[16:32], k.Dst[:])
	binary.BigEndian.PutUint16(b[32:], k.SrcPort)
	binary.BigEndian.PutUint16(b[34:], k.DstPort)
	b[36] = k.Proto
	if k.V6 {
		b[37] = 1
	}
	return xxhash.Sum64(b[:])
}

// HashSource returns the xxhash of the client address alone (the 16 bytes of Src), the hash
// the source-hash strategy uses: all connections of one client map to one backend.
func HashSource(k *Key) uint64 {
	return xxhash.Sum64(k.Src[:])
}
