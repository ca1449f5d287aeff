package xdpbase

// The BPF object and its Go bindings (bench_bpfel.go, bench_bpfel.o, ...) are generated from
// ../../dataplane/bpf/bench.c and committed, so a build needs no clang. After editing the C
// source, regenerate them with clang and libbpf-dev installed:
//
//	go generate ./internal/xdpbase/

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" bench ../../dataplane/bpf/bench.c
