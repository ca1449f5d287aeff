// SPDX-License-Identifier: GPL-2.0
//go:build ignore

// tc ingress program for test backends: strips an outer IPv4 (protocol 4 or 41) or IPv6
// (next header 4 or 41) header in front of an inner IPv4/IPv6 packet, so the inner packet
// reaches the backend's stack (the VIP sits on lo) and the reply goes straight to the
// client. It also strips outer IP + UDP headers of datagrams to a port listed in the
// udp_ports map: GUE variant 0 (a 4-byte GUE header, plus options, naming protocol 4 or 41)
// and GUE variant 1 / FOU (the inner IP header right behind UDP). Everything else passes
// untouched. Outer IPv4 options are allowed; outer IPv6 extension headers and fragments are
// not decapsulated.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Newer than this machine's uapi headers (kernel 6.3+).
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif


// Counters, index by enum (read by tests).
enum {
	STAT_SEEN = 0,  // IPIP, GUE and FOU packets seen
	STAT_DECAP = 1, // decapsulated
	STAT_ERROR = 2, // helper failed: dropped
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// UDP destination ports (network byte order) whose datagrams carry GUE or FOU.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __be16);
	__type(value, __u8);
} udp_ports SEC(".maps");

static __always_inline void count(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &k);
	if (v)
		*v += 1;
}

static __always_inline int strip(struct __sk_buff *skb, __u32 olen, __u8 inner)
{
	__u64 flags = inner == IPPROTO_IPIP ? BPF_F_ADJ_ROOM_DECAP_L3_IPV4 : BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	__be16 proto = inner == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);

	count(STAT_SEEN);
	// Removes olen bytes between the Ethernet header and the outer IP header; the DECAP_L3
	// flag sets skb->protocol to the inner family.
	if (bpf_skb_adjust_room(skb, -(__s32)olen, BPF_ADJ_ROOM_MAC, flags)) {
		count(STAT_ERROR);
		return TC_ACT_SHOT;
	}
	// Keep the Ethernet type in step (captures and anything re-reading it).
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0)) {
		count(STAT_ERROR);
		return TC_ACT_SHOT;
	}
	count(STAT_DECAP);
	return TC_ACT_OK;
}

// udp_inner looks at a UDP datagram behind an outer IP header of iplen bytes: for a GUE or
// FOU port it returns the inner protocol (IPPROTO_IPIP or IPPROTO_IPV6) and sets *olen to
// the bytes to strip; else 0.
static __always_inline __u8 udp_inner(struct udphdr *udp, void *data_end, __u32 iplen, __u32 *olen)
{
	__u8 *g = (void *)(udp + 1);

	if ((void *)(g + 4) > data_end)
		return 0;
	if (!bpf_map_lookup_elem(&udp_ports, &udp->dest))
		return 0;
	switch (g[0] >> 6) {
	case 0: // GUE variant 0: version 0, C 0 (data), hlen in 32-bit words, protocol
		if (g[0] & 0x20)
			return 0; // a control message
		*olen = iplen + sizeof(*udp) + 4 + (g[0] & 0x1f) * 4;
		return g[1] == IPPROTO_IPIP || g[1] == IPPROTO_IPV6 ? g[1] : 0;
	case 1: // GUE variant 1 (FOU): the inner IP version nibble
		*olen = iplen + sizeof(*udp);
		if (g[0] >> 4 == 4)
			return IPPROTO_IPIP;
		if (g[0] >> 4 == 6)
			return IPPROTO_IPV6;
	}
	return 0;
}

SEC("tc")
int xlb_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
		if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_IPV6 && ip->protocol != IPPROTO_UDP)
			return TC_ACT_OK;
		if (ip->ihl < 5 || (ip->frag_off & bpf_htons(0x3fff)))
			return TC_ACT_OK; // bad header or a fragment: leave it to the stack
		if (ip->protocol == IPPROTO_UDP) {
			__u32 iplen = ip->ihl * 4, olen = 0;
			struct udphdr *udp = (void *)ip + iplen;
			if ((void *)(udp + 1) > data_end)
				return TC_ACT_OK;
			__u8 inner = udp_inner(udp, data_end, iplen, &olen);
			return inner ? strip(skb, olen, inner) : TC_ACT_OK;
		}
		return strip(skb, ip->ihl * 4, ip->protocol);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_OK;
		if (ip6->nexthdr == IPPROTO_UDP) {
			__u32 olen = 0;
			struct udphdr *udp = (void *)(ip6 + 1);
			if ((void *)(udp + 1) > data_end)
				return TC_ACT_OK;
			__u8 inner = udp_inner(udp, data_end, sizeof(*ip6), &olen);
			return inner ? strip(skb, olen, inner) : TC_ACT_OK;
		}
		if (ip6->nexthdr != IPPROTO_IPIP && ip6->nexthdr != IPPROTO_IPV6)
			return TC_ACT_OK;
		return strip(skb, sizeof(*ip6), ip6->nexthdr);
	}
	return TC_ACT_OK;
}

char __license[] SEC("license") = "GPL";
