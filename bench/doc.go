// Package bench measures load balancers on the same machine, in the same run. On its own
// veth topology (`xlb bench`): a traffic generator (AF_XDP transmit through dataplane/xsk,
// prebuilt frame templates of UDP, TCP SYN or ACK flows, flat out or at a rate, with a magic
// and a send time in the payload), a counting sink (XDP_DROP with a counter) and a checking
// sink (MACs, encapsulation, spread over the backends, latency), the scenarios (xlb dr and
// tunnel at several sizes and flow counts, new flows, overload, latency) and the baselines
// run interleaved with them: the generator's own rate (XDP_DROP), in-kernel XDP_TX, the
// kernel's forwarding with nftables DNAT, an l2fwd on github.com/asavie/xdp, and IPVS where
// the kernel has ip_vs. On real ports (`xlb bench gen`, `xlb bench sink`): a Port is any
// interface, one AF_XDP socket and pinned thread per queue, zero copy where the driver has
// it; StartPortGen sends a Stream (sizes, IMIX and protocol mixes in their shares), StartSink
// counts what arrives and serves the counts to generators over a TCP control connection
// (ServeControl, DialSink), and Search runs the RFC 2544 throughput search and the latency
// trials. Both kinds of run end in a Report: a text table or Markdown with medians, ranges,
// ratios to the baselines and the placement (interfaces, drivers, queues, copy mode, CPUs).
package bench
