package sched

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// HashKey is the 128-bit secret of the flow hash that picks a flow's Maglev slot (strategies
// Maglev, FlowHash and SourceHash): SipHash-1-3, keyed with it. Every load balancer of a
// cluster (both hosts of a VRRP pair, every member of an ECMP group) must use the same key,
// so that a flow finds the same backend whichever host it reaches; a key that nobody outside
// knows keeps anyone from computing which backend a 5-tuple gets, and so from aiming traffic
// at one backend. The zero HashKey stands for DefaultHashKey.
type HashKey [16]byte

// DefaultHashKeyHex is the key used when none is configured: the 16 ASCII bytes
// "xlb-maglev-key-0". It is public, so it protects nothing: configure your own (for example
// `openssl rand -hex 16`), the same on every host of the cluster.
const DefaultHashKeyHex = "786c622d6d61676c65762d6b65792d30"

// ErrHashKey is returned by ParseHashKey for a string that is not 32 hex digits.
var ErrHashKey = errors.New("hash key must be 32 hex digits (128 bits)")

// defaultHashKey is DefaultHashKeyHex's key (a test checks they agree). Never written.
var defaultHashKey = HashKey{'x', 'l', 'b', '-', 'm', 'a', 'g', 'l', 'e', 'v', '-', 'k', 'e', 'y', '-', '0'}

// DefaultHashKey returns the key DefaultHashKeyHex spells.
func DefaultHashKey() HashKey { return defaultHashKey }

// ParseHashKey parses a key written as 32 hex digits.
func ParseHashKey(s string) (HashKey, error) {
	var k HashKey
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("%w: %d characters", ErrHashKey, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("%w: %w", ErrHashKey, err)
	}
	return k, nil
}

// UnmarshalText parses 32 hex digits (ParseHashKey): the configuration's hash_key.
func (hk *HashKey) UnmarshalText(b []byte) error {
	k, err := ParseHashKey(string(b))
	if err != nil {
		return err
	}
	*hk = k
	return nil
}

// String returns the key as 32 hex digits.
func (hk HashKey) String() string { return hex.EncodeToString(hk[:]) }

// IsDefault reports whether hk is DefaultHashKey or the zero key that stands for it.
func (hk HashKey) IsDefault() bool { return hk == HashKey{} || hk == defaultHashKey }

// words returns the key as SipHash's (k0, k1), the zero key replaced by the default.
func (hk HashKey) words() (k0, k1 uint64) {
	if hk == (HashKey{}) {
		hk = defaultHashKey
	}
	return binary.LittleEndian.Uint64(hk[0:8]), binary.LittleEndian.Uint64(hk[8:16])
}

// Flow returns the flow hash of k: SipHash-1-3, keyed with hk, of the key's canonical
// encoding (docs/CONTRACTS.md): for IPv4, the 4-byte Src and Dst, SrcPort and DstPort
// big-endian, Proto, then 0 (14 bytes); for IPv6, the 16-byte Src and Dst, the ports, Proto,
// then 1 (38 bytes). Every host with the same key computes the same value for the same flow,
// which is what lets a standby send existing flows where the master did. Fragments carry
// ports 0, so every fragment of a datagram hashes alike. It does not allocate.
func (hk HashKey) Flow(k *Key) uint64 {
	k0, k1 := hk.words()
	return k.flowHash(k0, k1)
}

// Source returns the hash of the client address alone, keyed with hk: SipHash-1-3 of the 4
// bytes of an IPv4 Src, of the 16 of an IPv6 one. It is what the source-hash strategy looks
// up, so all connections of one client map to one backend.
func (hk HashKey) Source(k *Key) uint64 {
	k0, k1 := hk.words()
	return k.sourceHash(k0, k1)
}
