package xdpprog

// The BPF objects and their Go bindings (xlb_bpfel.go, xlb_bpfel.o, ...) are
// generated from ../../bpf/*.c and committed, so a build needs no clang. After
// editing the C source, regenerate them with clang and libbpf-dev installed:
//
//	go generate ./dataplane/internal/xdpprog/
//
// (see dataplane/bpf/README.md).

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel,bpfeb -type flow_key -type vip_key -type svc_info -type limit -type src_key -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" xlb ../../bpf/xlb.c
