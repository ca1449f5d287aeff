package hugepage

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// size is the huge page size advised for (x86-64 and arm64 with 4 KiB base pages).
const size = 2 << 20

// Advise advises huge pages for the 2 MiB-aligned part of s's backing array. Call it before
// the memory is first written (a fresh make of a large slice is not yet touched), so that
// its pages fault in huge.
func Advise[T any](s []T) error {
	if len(s) == 0 {
		return nil
	}
	n := uintptr(len(s)) * unsafe.Sizeof(s[0])
	p := unsafe.Pointer(unsafe.SliceData(s))
	start := uintptr(p)
	lo := (start + size - 1) &^ (size - 1)
	hi := (start + n) &^ (size - 1)
	if hi <= lo {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo)
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
		return fmt.Errorf("madvise hugepage: %w", err)
	}
	return nil
}
