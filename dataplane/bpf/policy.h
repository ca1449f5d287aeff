// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// policy.h: the per-service defence of the xlb steering program (included by
// xlb.c after its counters): source ACLs in LPM tries, new-flow limits as
// GCRA cells, drops counted per service and reason, ACL hits per rule.

#ifndef XLB_POLICY_H
#define XLB_POLICY_H

// Key of an ACL trie: prefixlen counts the family byte's 8 bits plus the
// prefix's bits, so an IPv4 rule never matches an IPv6 source. A rule with 8
// bits is the family's default (set when the service has an allow list).
struct acl_key {
	__u32 prefixlen;
	__u8 family;
	__u8 addr[16];
};

// Value of an ACL trie: the rule's slot in acl_hits and what it does.
struct acl_val {
	__u32 rule;
	__u32 deny;
};

// New-flow limits of a service, a generic cell rate algorithm (a token bucket
// in one word): a new flow is admitted while tat - now <= burst_ns, and moves
// tat on by interval_ns. interval_ns 0 = no limit. src_* limit each source
// prefix (the source ANDed with src_mask4 or src_mask6) the same way in srcs,
// under the generation gen (new limits, or a new service in the slot, start
// with fresh source buckets).
struct limit {
	__u64 interval_ns;
	__u64 burst_ns;
	__u64 tat;
	__u64 src_interval_ns;
	__u64 src_burst_ns;
	__u8 src_mask4[16];
	__u8 src_mask6[16];
	__u32 gen;
	__u32 pad;
};

// Key of srcs: a service, its limits' generation and a masked source prefix.
struct src_key {
	__u32 id;
	__u32 gen;
	__u32 family;
	__u8 addr[16];
};

// Per-service drop reasons (svc_drops[id * D_MAX + reason]); keep in step with
// the Go wrapper.
enum {
	D_ACL,         // source denied by the ACL (a deny rule or the allow list's default)
	D_RATE,        // new flow over the service's rate
	D_SOURCE_RATE, // new flow over its source prefix's rate
	D_MAX,
};

// The inner map's key and value types reach BTF in full only through a
// global: these anchors are never read.
const volatile struct acl_key acl_key_btf;
const volatile struct acl_val acl_val_btf;

// One ACL trie per service slot; user space builds a service's new trie and
// swaps it in with one update, so a change never opens a gap.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, 1);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct acl_key);
		__type(value, struct acl_val);
	});
} acls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ACL_RULES);
	__type(key, __u32);
	__type(value, __u64);
} acl_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct limit);
} limits SEC(".maps");

// Per source prefix buckets (preallocated LRU: a flood of new prefixes
// recycles the least recently used, nothing is allocated per packet).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOURCES);
	__type(key, struct src_key);
	__type(value, __u64);
} srcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES * D_MAX);
	__type(key, __u32);
	__type(value, __u64);
} svc_drops SEC(".maps");

static __always_inline void bump(void *m, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(m, &idx);
	if (c)
		*c += 1;
}

static __always_inline int drop(__u32 id, __u32 reason, __u32 counter)
{
	bump(&svc_drops, id * D_MAX + reason);
	return count(counter, XDP_DROP);
}

// acl_denies looks the source up in the service's ACL trie; a hit is counted
// for its rule. No trie or no matching rule allows.
static __always_inline int acl_denies(__u32 id, const __u8 *saddr, int family)
{
	void *trie = bpf_map_lookup_elem(&acls, &id);
	if (!trie)
		return 0;
	struct acl_key k = {.family = family};
	if (family == FAMILY_V4) {
		k.prefixlen = 8 + 32;
		__builtin_memcpy(k.addr, saddr, 4);
	} else {
		k.prefixlen = 8 + 128;
		__builtin_memcpy(k.addr, saddr, 16);
	}
	struct acl_val *v = bpf_map_lookup_elem(trie, &k);
	if (!v)
		return 0;
	bump(&acl_hits, v->rule);
	return v->deny;
}

// admit is the cell rate check on *tat: it admits (1) and moves *tat on, or
// refuses (0). A lost compare-and-swap race is retried a few times, then
// refused.
static __always_inline int admit(__u64 *tat, __u64 now, __u64 interval, __u64 burst)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 t = old > now ? old : now;
		if (t - now > burst)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, t + interval) == old)
			return 1;
	}
	return 0;
}

// source_admits applies the per source prefix limit to a new flow from saddr.
static __always_inline int source_admits(__u32 id, struct limit *l, const __u8 *saddr, int family, __u64 now)
{
	struct src_key k = {.id = id, .gen = l->gen, .family = family};
	const __u8 *mask = family == FAMILY_V4 ? l->src_mask4 : l->src_mask6;
#pragma unroll
	for (int i = 0; i < 16; i++)
		k.addr[i] = saddr[i] & mask[i];
	__u64 *tat = bpf_map_lookup_elem(&srcs, &k);
	if (!tat) {
		__u64 first = now + l->src_interval_ns;
		if (bpf_map_update_elem(&srcs, &k, &first, BPF_NOEXIST) == 0)
			return 1;
		tat = bpf_map_lookup_elem(&srcs, &k);
		if (!tat)
			return 1;
	}
	return admit(tat, now, l->src_interval_ns, l->src_burst_ns);
}

// policy applies the service's ACL (any packet) and new-flow limits (a TCP SYN
// without ACK). It returns -1 to go on, or the verdict of a drop.
static __always_inline int policy(struct svc_info *svc, const __u8 *saddr, int family, int syn)
{
	__u32 id = svc->id;
	if (id >= MAX_SERVICES)
		return -1;
	if ((svc->flags & F_ACL) && acl_denies(id, saddr, family))
		return drop(id, D_ACL, C_DROP_ACL);
	if (!syn || !(svc->flags & F_LIMIT))
		return -1;
	struct limit *l = bpf_map_lookup_elem(&limits, &id);
	if (!l)
		return -1;
	__u64 now = bpf_ktime_get_ns();
	if (l->src_interval_ns && !source_admits(id, l, saddr, family, now))
		return drop(id, D_SOURCE_RATE, C_DROP_SOURCE_RATE);
	if (l->interval_ns && !admit(&l->tat, now, l->interval_ns, l->burst_ns))
		return drop(id, D_RATE, C_DROP_RATE);
	return -1;
}

#endif // XLB_POLICY_H
