//go:build !amd64

package prefetch

import (
	"runtime"
	"unsafe"
)

// Lines loads one byte of every address in p (there is no prefetch instruction to use
// here): the lines come into the cache, but each load waits for its line.
func Lines(p []unsafe.Pointer) {
	var x uint8
	for _, a := range p {
		x += *(*uint8)(a)
	}
	runtime.KeepAlive(x) // keeps the loads (a shared sink would be a data race between cores)
}
