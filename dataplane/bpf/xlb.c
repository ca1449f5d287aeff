// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// xlb: the XDP steering program of the xlb load balancer.
//
// It redirects to the AF_XDP socket of the receive queue (xsks[rx_queue_index])
// only the packets user space handles: packets to a configured service
// (services: destination address, port, protocol; port 0 = every port),
// replies from NAT backends (nat_backends: source address, port, protocol;
// port 0 = every port),
// IPv4/IPv6 fragments to a VIP (vips), and ICMP/ICMPv6 errors about service
// flows (the embedded packet's source is a service, or the outer destination is
// a VIP). A packet from a NAT backend to one of the LB host's own addresses
// (locals: the reply to the host's own health check or connection) is not a NAT
// reply and goes to the kernel. Everything else, including ICMP echo, ARP and neighbour discovery,
// goes to the kernel with XDP_PASS, and so does a redirect that finds no socket
// in the queue's slot. Per-CPU counters record every verdict by reason.
//
// Defence (the per-service policy, see the comment above struct svc_info): a
// packet to a service (or a fragment to a VIP with one service of its
// protocol) whose source the service's ACL denies is dropped (XDP_DROP), and so
// is a TCP SYN (a new flow) over the service's or its source prefix's new-flow
// rate. Every drop is counted by reason, globally and per service, and every
// ACL hit per rule.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FAMILY_V4 4
#define FAMILY_V6 6
#define MAX_QUEUES 256
#define MAX_EXT_HEADERS 6
#define MAX_SERVICES 4096
#define MAX_ACL_RULES 131072
#define MAX_SOURCES 65536

// Key of services (destination) and nat_backends (source). IPv4 addresses fill
// addr[0:4], the rest is zero; port is in network byte order.
struct flow_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

// Key of vips.
struct vip_key {
	__u8 addr[16];
	__u32 family;
};

// Value of services and frags: the service's slot in the per-service arrays
// (acls, limits, svc_drops) and which of its policies are set. User space
// sets a flag only after the policy it names is in place, and clears it before
// removing the policy.
struct svc_info {
	__u32 id;
	__u32 flags;
};

#define F_ACL 1   // acls[id] holds the service's ACL trie
#define F_LIMIT 2 // limits[id] holds new-flow limits

// Counter indexes; keep in step with the Go wrapper.
enum {
	C_REDIRECT_SERVICE,  // packet to a service
	C_REDIRECT_NAT,      // reply from a NAT backend
	C_REDIRECT_ICMP,     // ICMP error about a service flow
	C_REDIRECT_FRAGMENT, // IP fragment to a VIP
	C_PASS_NOT_IP,       // ARP, LLDP, ... (or a second VLAN tag)
	C_PASS_NO_MATCH,     // IP, not for xlb
	C_PASS_NO_SOCKET,    // for xlb, but no AF_XDP socket on the queue
	C_ERR_TRUNCATED,     // a header runs past the end of the packet
	C_ERR_MALFORMED,     // bad version, header length, too many extension headers
	C_PASS_LOCAL,        // from a NAT backend to the host's own address (health check reply)
	C_DROP_ACL,          // dropped: source denied by the service's ACL
	C_DROP_RATE,         // dropped: SYN over the service's new-flow rate
	C_DROP_SOURCE_RATE,  // dropped: SYN over the source prefix's new-flow rate
	C_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, struct svc_info);
} services SEC(".maps");

// (VIP, protocol) -> the VIP's one service of that protocol, whose ACL applies
// to fragments (port is 0). No entry when the VIP has none or several.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct flow_key);
	__type(value, struct svc_info);
} frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u32);
} nat_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vip_key);
	__type(value, __u32);
} vips SEC(".maps");

// The LB host's own addresses (every interface's), kept current by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vip_key);
	__type(value, __u32);
} locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int count(__u32 idx, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
	return verdict;
}

#include "policy.h"

static __always_inline int redirect(struct xdp_md *ctx, __u32 reason)
{
	int v = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (v == XDP_REDIRECT)
		return count(reason, XDP_REDIRECT);
	return count(C_PASS_NO_SOCKET, v);
}

// lookup_port looks (addr, port, proto) up in m exactly, then with port 0
// (every port), and returns the value or NULL. k's port is restored.
static __always_inline void *lookup_port(void *m, struct flow_key *k)
{
	void *v = bpf_map_lookup_elem(m, k);
	if (v || k->port == 0)
		return v;
	__be16 port = k->port;
	k->port = 0;
	v = bpf_map_lookup_elem(m, k);
	k->port = port;
	return v;
}

static __always_inline struct svc_info *service_lookup(struct flow_key *k)
{
	return lookup_port(&services, k);
}

static __always_inline int service_hit(struct flow_key *k)
{
	return lookup_port(&services, k) != NULL;
}

static __always_inline int addr_in(void *m, const __u8 *addr, int family)
{
	struct vip_key k = {.family = family};
	if (family == FAMILY_V4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(m, &k) != NULL;
}

static __always_inline int is_vip(const __u8 *addr, int family)
{
	return addr_in(&vips, addr, family);
}

// Result of walking an IP header: the L4 protocol and where L4 starts.
struct l3 {
	void *l4;
	__u8 proto;
	__u8 frag; // a fragment: first or not
	__u8 later_frag; // a non-first fragment: no L4 header
};

// ipv4_walk validates an IPv4 header (options included) at ip.
// It returns 0, C_ERR_TRUNCATED or C_ERR_MALFORMED.
static __always_inline int ipv4_walk(struct iphdr *ip, void *end, struct l3 *r)
{
	if ((void *)(ip + 1) > end)
		return C_ERR_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return C_ERR_MALFORMED;
	__u32 hlen = ip->ihl * 4;
	if ((void *)ip + hlen > end)
		return C_ERR_TRUNCATED;
	r->l4 = (void *)ip + hlen;
	r->proto = ip->protocol;
	__u16 frag = bpf_ntohs(ip->frag_off);
	r->frag = (frag & 0x3fff) != 0; // MF or an offset
	r->later_frag = (frag & 0x1fff) != 0;
	return 0;
}

struct ext_hdr {
	__u8 next;
	__u8 len;
	__be16 frag_off; // fragment header only
};

// ipv6_walk skips up to MAX_EXT_HEADERS extension headers after ip.
static __always_inline int ipv6_walk(struct ipv6hdr *ip, void *end, struct l3 *r)
{
	if ((void *)(ip + 1) > end)
		return C_ERR_TRUNCATED;
	if (ip->version != 6)
		return C_ERR_MALFORMED;
	void *p = ip + 1;
	__u8 next = ip->nexthdr;
	r->frag = 0;
	r->later_frag = 0;
#pragma unroll
	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		struct ext_hdr *h = p;
		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_MH:
			if ((void *)(h + 1) > end)
				return C_ERR_TRUNCATED;
			next = h->next;
			p += (h->len + 1) * 8;
			break;
		case IPPROTO_AH:
			if ((void *)(h + 1) > end)
				return C_ERR_TRUNCATED;
			next = h->next;
			p += (h->len + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if ((void *)(h + 1) > end)
				return C_ERR_TRUNCATED;
			next = h->next;
			r->frag = 1;
			r->later_frag = (bpf_ntohs(h->frag_off) & 0xfff8) != 0;
			p += 8;
			break;
		default:
			r->l4 = p;
			r->proto = next;
			return 0;
		}
	}
	// Still an extension header after the bound: user space would not get
	// further either.
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_MH:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return C_ERR_MALFORMED;
	}
	r->l4 = p;
	r->proto = next;
	return 0;
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

// icmp_inner checks the packet embedded in an ICMP error at inner: is its
// source a service? Returns 1 when it is, 0 when not or when it is cut short.
static __always_inline int icmp_inner(void *inner, void *end, int family)
{
	struct flow_key k = {.family = family};
	struct l3 r = {};
	if (family == FAMILY_V4) {
		struct iphdr *ip = inner;
		if (ipv4_walk(ip, end, &r))
			return 0;
		if (r.later_frag)
			return 0;
		__builtin_memcpy(k.addr, &ip->saddr, 4);
	} else {
		struct ipv6hdr *ip = inner;
		if (ipv6_walk(ip, end, &r))
			return 0;
		if (r.later_frag)
			return 0;
		__builtin_memcpy(k.addr, &ip->saddr, 16);
	}
	if (!has_ports(r.proto))
		return 0;
	__be16 *ports = r.l4;
	if ((void *)(ports + 2) > end)
		return 0;
	k.port = ports[0];
	k.proto = r.proto;
	return service_hit(&k);
}

static __always_inline int is_icmp_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 11 || type == 12; // unreachable, time exceeded, parameter problem
	return type >= 1 && type <= 4; // ICMPv6: unreachable, too big, time exceeded, parameter problem
}

SEC("xdp")
int xlb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return count(C_ERR_TRUNCATED, XDP_PASS);
	void *l3 = eth + 1;
	__u16 type = eth->h_proto;
	if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD)) {
		__be16 *tag = l3;
		if ((void *)(tag + 2) > end)
			return count(C_ERR_TRUNCATED, XDP_PASS);
		type = tag[1];
		l3 = tag + 2;
	}

	struct flow_key dst = {}, src = {};
	struct l3 r = {};
	int family, err;
	const __u8 *daddr;
		if (type == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		family = FAMILY_V4;
		err = ipv4_walk(ip, end, &r);
		if (err)
			return count(err, XDP_PASS);
		__builtin_memcpy(dst.addr, &ip->daddr, 4);
		__builtin_memcpy(src.addr, &ip->saddr, 4);
	} else if (type == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = l3;
		family = FAMILY_V6;
		err = ipv6_walk(ip, end, &r);
		if (err)
			return count(err, XDP_PASS);
		__builtin_memcpy(dst.addr, &ip->daddr, 16);
		__builtin_memcpy(src.addr, &ip->saddr, 16);
	} else {
		return count(C_PASS_NOT_IP, XDP_PASS);
	}
	daddr = dst.addr;

	if (r.frag) {
		if (!is_vip(daddr, family))
			return count(C_PASS_NO_MATCH, XDP_PASS);
		dst.family = family;
		dst.proto = r.proto;
		// As the workers do: the VIP's all-ports service, else its only
		// service of the protocol.
		struct svc_info *svc = bpf_map_lookup_elem(&services, &dst);
		if (!svc)
			svc = bpf_map_lookup_elem(&frags, &dst);
		if (svc) {
			int v = policy(svc, src.addr, family, 0);
			if (v >= 0)
				return v;
		}
		return redirect(ctx, C_REDIRECT_FRAGMENT);
	}

	if (has_ports(r.proto)) {
		__be16 *ports = r.l4;
		if ((void *)(ports + 2) > end)
			return count(C_ERR_TRUNCATED, XDP_PASS);
		dst.family = src.family = family;
		dst.proto = src.proto = r.proto;
		dst.port = ports[1];
		src.port = ports[0];
		struct svc_info *svc = service_lookup(&dst);
		if (svc) {
			int syn = 0;
			if (r.proto == IPPROTO_TCP) {
				// SYN without ACK. A header too short for the flags is
				// no SYN: the workers drop it as malformed.
				__u8 *th = r.l4;
				if ((void *)(th + 14) <= end)
					syn = (th[13] & 0x12) == 0x02;
			}
			int v = policy(svc, src.addr, family, syn);
			if (v >= 0)
				return v;
			return redirect(ctx, C_REDIRECT_SERVICE);
		}
		if (lookup_port(&nat_backends, &src)) {
			// Only NAT replies pay this lookup: a NAT reply goes to a
			// client, never to the host itself.
			if (addr_in(&locals, daddr, family))
				return count(C_PASS_LOCAL, XDP_PASS);
			return redirect(ctx, C_REDIRECT_NAT);
		}
		return count(C_PASS_NO_MATCH, XDP_PASS);
	}

	if ((family == FAMILY_V4 && r.proto == IPPROTO_ICMP) ||
	    (family == FAMILY_V6 && r.proto == IPPROTO_ICMPV6)) {
		__u8 *icmp = r.l4;
		if ((void *)(icmp + 8) > end)
			return count(C_ERR_TRUNCATED, XDP_PASS);
		if (!is_icmp_error(r.proto, icmp[0]))
			return count(C_PASS_NO_MATCH, XDP_PASS);
		if (icmp_inner(icmp + 8, end, family) || is_vip(daddr, family))
			return redirect(ctx, C_REDIRECT_ICMP);
	}
	return count(C_PASS_NO_MATCH, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
