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
// wherever the kernel has them. A slice of 2 MiB or more starts on a huge-page boundary and
// its last huge page is whole (the mapping is rounded up, the rest stays untouched), so all
// of it can be on huge pages: an unaligned mapping of a few MiB left up to 2 MiB at each end
// on small pages. T must hold no pointers: the garbage collector does not scan the mapping.
// n must be positive.
func Alloc[T any](n int) ([]T, func() error, error) {
	var zero T
	want := uintptr(n) * unsafe.Sizeof(zero)
	if n <= 0 || want/uintptr(n) != unsafe.Sizeof(zero) {
		return nil, nil, fmt.Errorf("hugepage alloc of %d elements: %w", n, unix.EINVAL)
	}
	span, extra := want, uintptr(0)
	if want >= size {
		// Whole huge pages, and room to start the slice on a huge-page boundary.
		span, extra = (want+size-1)&^(size-1), size
	}
	raw, err := unix.Mmap(-1, 0, int(span+extra), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %d bytes: %w", span+extra, err)
	}
	off := uintptr(0)
	if extra > 0 {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(raw)))
		off = (start+size-1)&^(size-1) - start
	}
	mem := raw[off : off+span]
	_ = Advise(mem) // advice only (nothing for a mapping under one huge page)
	s := unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	return s, func() error { return unix.Munmap(raw) }, nil
}
