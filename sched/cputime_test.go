package sched

import (
	"testing"

	"golang.org/x/sys/unix"
)

// cpuClock reports a benchmark's process CPU time per operation beside the wall-clock
// ns/op: on a shared 2-vCPU machine under load, wall time includes the time other processes
// held the CPU, while the process's CPU time does not. Process time (not thread time)
// includes the work of background goroutines, such as ristretto's Set processing.
type cpuClock struct {
	start int64
}

// processCPU returns the process's user+system CPU time in nanoseconds.
func processCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// startCPU starts the clock; call it just before the b.Loop loop.
func startCPU(*testing.B) *cpuClock {
	return &cpuClock{start: processCPU()}
}

// stop reports cpu-ns/op; call it right after the loop.
func (c *cpuClock) stop(b *testing.B) {
	if d := processCPU() - c.start; d > 0 && b.N > 0 {
		b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
	}
}
