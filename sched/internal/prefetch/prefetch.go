// Package prefetch asks the CPU to bring cache lines in without waiting for them.
//
// Go has no prefetch instruction of its own: a "prefetch" written in Go is a load, which
// must complete before it retires, so a few of them in flight fill the reorder buffer and
// stall the core. On amd64, Lines issues PREFETCHT0 for every address, which retires at
// once; elsewhere it falls back to loads.
package prefetch
