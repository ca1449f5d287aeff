package prefetch

import (
	"testing"
	"unsafe"
)

// TestLines: Lines takes any number of addresses, leaves the memory as it was and does not
// allocate.
func TestLines(t *testing.T) {
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	var p []unsafe.Pointer
	for i := 0; i < len(buf); i += 64 {
		p = append(p, unsafe.Pointer(&buf[i]))
	}
	Lines(nil)
	Lines(p[:1])
	Lines(p)
	for i := range buf {
		if buf[i] != byte(i) {
			t.Fatalf("byte %d changed", i)
		}
	}
	if testing.AllocsPerRun(10, func() { Lines(p) }) != 0 {
		t.Fatal("Lines allocates")
	}
}
