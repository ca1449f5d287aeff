// Package lab builds throw-away network topologies out of Linux network namespaces,
// veth pairs and bridges, for the end-to-end tests of the dataplane, control, demo and
// bench. Build (or testnet.New in a test: it skips without root or kernel support and registers
// Close with t.Cleanup) makes a OneArm (LVS-DR/tunnel: client, LB and backends on one L2
// segment, the VIP on the LB's eth0 and on every backend's lo with arp_ignore=1,
// arp_announce=2) or a TwoArm (LVS-NAT: client on net A, backends on net B behind the LB,
// which is their default gateway) topology; Close removes every namespace it made, and
// only those. Namespaces are named "xlb-<id>-<role>" (roles sw, client, lb, lb1.., b0..),
// so parallel tests never collide and `ip netns exec` works on them while a test runs.
// NS.Do runs Go code inside a namespace (sockets made there stay there), NS.Start runs a
// command there (killed on Close); backends serve HTTP (answering their name, /healthz)
// and can be killed and revived, slowed (SetDelay) or unplugged (Net.Unplug: timeouts
// instead of refusals); clients dial from inside their namespace. Every veth has
// tx checksum offload, TSO, GSO and GRO off (see NS.OffloadsOff for why), IPv6 DAD is off,
// and Build waits until every link is operationally up so no first packet is lost.
// Config.Decap attaches a tc BPF program (package decap) to each backend's ingress that
// strips IPIP, IPv6-in-IPv4, IPv4-in-IPv6 and IP6IP6 outer headers, since this kernel
// has no ipip/ip6tnl devices.
//
// Addresses (all inside 198.18.0.0/15 and 2001:2::/48, RFC 2544 / RFC 5180 benchmarking
// ranges; the IPv6 host part uses the IPv4 host number's digits):
//
//	OneArm, one segment 198.18.0.0/24, 2001:2::/64 (bridge br0 in the "sw" namespace):
//	  client     eth0  198.18.0.1      2001:2::1
//	  LB i       eth0  198.18.0.(2+i)  2001:2::(2+i)    VIP on LB 0's eth0 (/32, /128)
//	  backend i  eth0  198.18.0.(11+i) 2001:2::(11+i)   VIP on lo; default route via client
//	  VIP              198.18.0.100    2001:2::100
//	TwoArm, net A 198.18.1.0/24, 2001:2:0:1::/64 (br0); net B 198.19.1.0/24, 2001:2:0:101::/64 (br1):
//	  client     eth0  198.18.1.1      2001:2:0:1::1    route to net B via the LB
//	  LB         eth0  198.18.1.2      2001:2:0:1::2    VIP on eth0; forwarding on
//	             eth1  198.19.1.1      2001:2:0:101::1
//	  backend i  eth0  198.19.1.(11+i) 2001:2:0:101::(11+i)  default route via 198.19.1.1
//	  VIP              198.18.1.100    2001:2:0:1::100
//
// Client source pools 198.18.64.0/18 and 2001:2:0:4000::/52 (Net.ClientPool/ClientPool6)
// are routed locally on the client (non-local bind on), so a test can dial from any of
// their addresses; LBs (and OneArm backends) route by default via the client, so replies
// to any source in the test ranges go back to the client's MAC.
package lab
