// Package bench measures xlb's data path against the alternatives on the same machine, in the
// same run. It has a traffic generator (AF_XDP transmit through the project's ring code, from
// prebuilt frame templates of N UDP or TCP SYN flows, flat out or at a target rate, with a
// send timestamp in the payload), two sinks (an XDP program that counts and drops, and an
// AF_XDP receiver that checks every frame it gets: MACs, encapsulation, spread over the
// backends, and the latency from the payload's timestamp), the one-host topology they run
// on (a network namespace with a veth pair), the scenarios (xlb dr and tunnel forwarding at
// several sizes and flow counts, new flows, overload, latency) and the baselines (in-kernel
// XDP_TX, the kernel's forwarding path with nftables DNAT, IPVS where the kernel has it),
// run interleaved, and a report writer (text table and Markdown with medians, ranges,
// ratios to the baselines and the CPU placement). `xlb bench` is its command line.
package bench
