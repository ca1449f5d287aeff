//go:build amd64 || arm64

package sched

import "unsafe"

// tailWord returns the key's last 8 bytes, 30-37: Dst's last two, SrcPort, DstPort, Proto
// and V6, in one load (amd64 and arm64 read an unaligned word in one instruction). Only for
// comparing two keys: which bytes land where in the word depends on the byte order.
func (k *Key) tailWord() uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(k), keyBytes-8))
}

// Key's layout, which tailWord relies on, checked at compile time: 38 bytes, V6 the last,
// no padding (a negative constant converted to uintptr does not compile).
const (
	_ = uintptr(keyBytes - unsafe.Sizeof(Key{}))
	_ = uintptr(unsafe.Sizeof(Key{}) - keyBytes)
	_ = uintptr(unsafe.Offsetof(Key{}.V6) - (keyBytes - 1))
	_ = uintptr(keyBytes - 1 - unsafe.Offsetof(Key{}.V6))
)
