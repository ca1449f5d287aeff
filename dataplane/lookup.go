package dataplane

import (
	"encoding/binary"
	"math/bits"
)

// tupleKey is what the per-packet tables are keyed by: an address (IPv4 in the first four
// bytes, like encap.FlowKey), a port (host byte order, 0 = all ports) and an L4 protocol.
type tupleKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
	v6    bool
}

func (k *tupleKey) hash() uint64 {
	a := binary.LittleEndian.Uint64(k.addr[0:8])
	b := binary.LittleEndian.Uint64(k.addr[8:16])
	c := uint64(k.port) | uint64(k.proto)<<16
	if k.v6 {
		c |= 1 << 24
	}
	// Two rounds of multiply-fold mixing (wyhash style): cheap and good enough for an
	// open-addressed table whose keys are chosen by the operator, not by the network.
	h1, l1 := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	h2, l2 := bits.Mul64(h1^l1^c, 0x8ebc6af09c88c6e3)
	return h2 ^ l2
}

// slot is one entry of an open-addressed table: the key and value+1 (0 marks an empty slot).
// It holds no pointers, so the garbage collector never scans a table.
type slot struct {
	key tupleKey
	val int32
}

// table is an immutable open-addressed hash table with linear probing, sized to a power of two
// at least twice the number of entries, so a probe sequence is short and always ends at an
// empty slot. Built once per snapshot, read by every worker without locks.
type table struct {
	slots []slot
	mask  uint64
}

func newTable(n int) table {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	return table{slots: make([]slot, size), mask: uint64(size - 1)}
}

// insert adds k -> v and reports false when k is already present (the table keeps the first).
func (t *table) insert(k tupleKey, v int) bool {
	for i := k.hash() & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.val == 0 {
			s.key, s.val = k, int32(v)+1
			return true
		}
		if s.key == k {
			return false
		}
	}
}

// get returns the value stored for k, or -1.
func (t *table) get(k *tupleKey) int {
	if len(t.slots) == 0 {
		return -1
	}
	for i := k.hash() & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.val == 0 {
			return -1
		}
		if s.key == *k {
			return int(s.val) - 1
		}
	}
}
