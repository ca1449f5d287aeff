// SPDX-License-Identifier: GPL-2.0
//go:build ignore

// tc egress program for health checks through the VIP of a tunnel service: an IPv4 probe
// whose skb mark has an entry in the encaps map gets the outer headers the data path would
// give the service's packets (IPIP, GUE or FOU, outer IPv4), so the probe tests the
// backend's decapsulation and its VIP as the forwarded traffic does. The outer UDP checksum
// is 0 (allowed over IPv4). Everything else passes untouched.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

enum { KIND_IPIP = 1, KIND_GUE = 2, KIND_FOU = 3 };

struct encap {
	__be32 src, dst; // outer addresses
	__be16 port;     // GUE/FOU UDP destination port
	__u8 kind;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); // skb mark
	__type(value, struct encap);
} encaps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps"); // 0: encapsulated, 1: failed (dropped)

struct outer {
	struct iphdr ip;
	struct udphdr udp;
	__u8 gue[4];
};
_Static_assert(sizeof(struct outer) == 32, "outer headers are not contiguous");

static __always_inline void count(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u16 ip_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

SEC("tc")
int xlb_probe_encap(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;
	struct encap *e = bpf_map_lookup_elem(&encaps, &mark);
	if (!e || skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	__u32 inner = skb->len - ETH_HLEN;
	__u32 olen = sizeof(struct iphdr);
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	if (e->kind == KIND_GUE || e->kind == KIND_FOU) {
		olen += sizeof(struct udphdr) + (e->kind == KIND_GUE ? 4 : 0);
		flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	}
	struct outer o = {};
	o.ip.version = 4;
	o.ip.ihl = 5;
	o.ip.tot_len = bpf_htons(olen + inner);
	o.ip.frag_off = bpf_htons(0x4000);
	o.ip.ttl = 64;
	o.ip.protocol = e->kind == KIND_IPIP ? IPPROTO_IPIP : IPPROTO_UDP;
	o.ip.saddr = e->src;
	o.ip.daddr = e->dst;
	o.ip.check = ip_csum(&o.ip);
	o.udp.source = bpf_htons(0xc000 | (bpf_get_hash_recalc(skb) & 0x3fff));
	o.udp.dest = e->port;
	o.udp.len = bpf_htons(olen - sizeof(struct iphdr) + inner);
	o.gue[1] = IPPROTO_IPIP;
	if (bpf_skb_adjust_room(skb, olen, BPF_ADJ_ROOM_MAC, flags)) {
		count(1);
		return TC_ACT_SHOT;
	}
	long err;
	switch (e->kind) {
	case KIND_GUE:
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(struct iphdr) + sizeof(struct udphdr) + 4, 0);
		break;
	case KIND_FOU:
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(struct iphdr) + sizeof(struct udphdr), 0);
		break;
	default:
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(struct iphdr), 0);
	}
	if (err) {
		count(1);
		return TC_ACT_SHOT;
	}
	count(0);
	return TC_ACT_OK;
}

char __license[] SEC("license") = "GPL";
