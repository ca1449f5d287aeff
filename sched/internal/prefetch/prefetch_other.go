//go:build !amd64

package prefetch

import "unsafe"

// sink keeps the fallback's loads from being optimised away.
var sink uint8

// Lines loads one byte of every address in p (there is no prefetch instruction to use
// here): the lines come into the cache, but each load waits for its line.
func Lines(p []unsafe.Pointer) {
	var x uint8
	for _, a := range p {
		x += *(*uint8)(a)
	}
	sink += x
}
