// Package xsk is the AF_XDP socket layer of the data path, and of the bench package's
// traffic generator and sinks, which drive it directly: a UMEM (the packet
// memory shared with the kernel, cut into frames of 2048 or 4096 bytes, with an
// O(1) stack of free frames), and sockets bound to one (interface, queue) with
// their fill, rx, tx and completion rings mapped into user space. Ring indexes
// live in kernel-shared memory and are read and written with sync/atomic; each
// ring keeps a cached copy of the peer's index and publishes once per batch.
// Sockets use XDP_USE_NEED_WAKEUP and make a syscall only when the kernel asks
// for one. Receive, Transmit, Complete and Fill are shaped for one worker per
// queue that moves batches of descriptors; a frame received on one socket can
// be transmitted on another socket of the same UMEM (XDP_SHARED_UMEM), also on
// another interface where the kernel allows it. A UMEM and every socket on it
// belong to one goroutine: nothing here is safe for concurrent use.
//
// Frame layout: the kernel writes a received packet XDP_PACKET_HEADROOM (256)
// bytes plus UMEMConfig.Headroom into its frame, so an rx descriptor's Addr is
// frameBase + UMEM.RxOffset() and everything in front of the packet, RxOffset()
// bytes, may be overwritten to prepend outer headers (an outer IPv6 header and
// an Ethernet header need 54). A tx descriptor may start anywhere in a frame as
// long as the packet ends inside it.
package xsk
