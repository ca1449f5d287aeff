// Package encap parses and rewrites packets in place, in AF_XDP frames, without allocating,
// locking or panicking. Parse fills a caller-owned Packet (one per worker, reset in place) with
// the L2/L3/L4 offsets and the FlowKey the scheduler hashes; ICMP errors get the key of the packet
// they quote, reversed. The forwarding functions implement the three load-balancing methods:
// SetMACs for direct routing, Tunnel.Encap for IPIP, IP6IP6 and IPv4-in-IPv6 encapsulation, or GUE
// and FOU (a UDP header whose source port follows the flow), written into the frame's headroom
// (never moving the inner packet), and NATToBackend/NATToClient for
// address and port translation with RFC 1624 incremental checksum updates. When an encapsulated
// packet would not fit the egress MTU, the frame is turned into the ICMP "fragmentation needed"
// or ICMPv6 "packet too big" reply for the sender. Outcomes are small Reason codes, never error
// values, so a worker can count them in an array. QUICDestConnID finds a QUIC packet's destination
// connection ID, and QUICLB decodes the server ID that QUIC-LB (draft-ietf-quic-load-balancers)
// servers put into it, in plaintext or AES-encrypted (servers encode with the same type). Slices and offsets that describe a frame stay
// valid until that frame is recycled.
package encap
