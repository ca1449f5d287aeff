// Package dataplane forwards load-balanced traffic in user space over AF_XDP sockets. Control
// builds an immutable Snapshot (the services with their VIP, port, protocol, forwarding method
// and sched.Service, per-backend next hops, the stateless NAT return mapping and the routes
// back to clients) and publishes it with Dataplane.Publish. Every worker (one per queue id,
// serving that queue of every interface through one shared UMEM; a goroutine locked to an OS
// thread pinned to a CPU) loads it once per batch, takes up to 64 frames from a receive ring
// and runs them through an Engine: parse (encap), service lookup, NAT
// return lookup, connection table and scheduler (sched.Core), then direct routing (MAC
// rewrite), IPIP/IP6IP6, GUE or FOU encapsulation into the frame's headroom or NAT rewrite, with ICMP
// "fragmentation needed"/"packet too big" sent back when the egress MTU is too small. Frames
// go out of the interface the route names, on the same socket (the fast path) or through a
// socket of another interface sharing the worker's UMEM; dropped frames return to the fill
// ring and every outcome is counted per worker (Dataplane.Stats, readable while running). The
// XDP program steers only service traffic, NAT replies and ICMP errors about service flows to
// the sockets and passes everything else (ARP, SSH, ping, and replies from NAT backends to the
// host's own addresses, such as control's health checks) to the kernel; the Dataplane keeps
// its maps in step with the published snapshot and the host's addresses. A NAT reply to a
// client the snapshot has no route to yet is translated and handed to the kernel to route.
// Per-service and per-backend packets, bytes and new flows are counted per worker and summed
// by Dataplane.FlowStats; the connection-table entries per backend by Dataplane.ActiveFlows.
// A UDP service with QUIC-LB settings (ServiceSpec.QUIC) sends a packet whose destination
// connection ID carries a backend's server ID straight to that backend while it is up, whatever
// the client's address (see quic.go); other packets take the 4-tuple path.
// Dataplane.StartCapture arms a packet capture: while it runs, each worker copies the frames
// that pass its filter, as received, as sent and as dropped with the reason, into a bounded
// ring of its own, never waiting for the reader (records that do not fit are counted). The
// Engine needs no sockets: tests and benchmarks drive it with
// in-memory frames.
package dataplane
