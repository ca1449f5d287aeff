// Package xdpbase holds the in-kernel reference XDP programs of the benchmarks
// (dataplane/bpf/bench.c): "drop" (XDP_DROP with a per-CPU packet count: the offered load,
// and the counting sink) and "swap" (swap the MACs and XDP_TX: the in-kernel l2fwd limit).
// The bench package, the data path's veth tests and the AF_XDP socket tests attach them to
// the far side of a veth pair. Nothing of xlb's own data path uses them.
package xdpbase
