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

// Alloc returns a zeroed slice of n elements in an anonymous mapping of its own, advised for
// huge pages before anything touches it, and the function that unmaps it (call it once,
// when nothing uses the slice any more). Memory from Go's heap may come back already
// touched, in small pages, from an earlier object; a fresh mapping faults in huge pages
// wherever the kernel has them. T must hold no pointers: the garbage collector does not
// scan the mapping. n must be positive.
func Alloc[T any](n int) ([]T, func() error, error) {
	var zero T
	size := uintptr(n) * unsafe.Sizeof(zero)
	if n <= 0 || size/uintptr(n) != unsafe.Sizeof(zero) {
		return nil, nil, fmt.Errorf("hugepage alloc of %d elements: %w", n, unix.EINVAL)
	}
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	s := unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	_ = Advise(s) // advice only
	return s, func() error { return unix.Munmap(mem) }, nil
}
