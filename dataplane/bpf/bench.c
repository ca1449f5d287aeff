// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Baseline programs for the AF_XDP benchmarks: the in-kernel limit.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

// packets[0] counts the frames each program saw, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

static __always_inline void count(void)
{
	__u32 k = 0;
	__u64 *c = bpf_map_lookup_elem(&packets, &k);
	if (c)
		*c += 1;
}

// drop drops every frame: the offered load.
SEC("xdp")
int drop(struct xdp_md *ctx)
{
	count();
	return XDP_DROP;
}

// swap swaps the Ethernet addresses and sends the frame back (XDP_TX): what
// an in-kernel l2fwd reaches.
SEC("xdp")
int swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	count();
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	unsigned char tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
