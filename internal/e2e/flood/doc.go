// Package flood holds the SYN flood test of xlb's defences: a real `xlb run` in a
// namespace topology, legitimate clients (long-lived connections and a request loop)
// and a flood of TCP SYNs from random sources, with and without the XDP program's
// new-flow limits and ACL. Its figures are in docs/bench/flood.md.
package flood
