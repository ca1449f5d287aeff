package prefetch

import "unsafe"

// Lines asks for the cache line of every address in p to be loaded into every cache level
// (PREFETCHT0). It never faults, whatever the addresses, and does not wait for the lines.
//
//go:noescape
func Lines(p []unsafe.Pointer)
