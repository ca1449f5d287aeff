// Package xdpprog loads the XDP steering program xlb (C source in
// dataplane/bpf), fills its maps, attaches it to an interface through a
// bpf_link (so a crashed process leaves nothing behind), registers AF_XDP
// sockets in its XSKMAP and reads its per-CPU counters. The program redirects
// to the AF_XDP socket of the receive queue only what the load balancer
// handles: packets to a configured service, replies from NAT backends,
// fragments to a VIP and ICMP errors about service flows; the rest goes to the
// kernel. Per service it also enforces a Policy (SetPolicy): an ACL of source prefixes
// (an LPM trie per service, swapped in whole) and new-flow limits on TCP SYNs (token
// buckets for the service and per source prefix), counting drops per service and reason
// and ACL hits per rule. Load one Program per interface: the XSKMAP is indexed by queue id.
// The generated bindings and objects are committed; see gen.go to regenerate.
package xdpprog
