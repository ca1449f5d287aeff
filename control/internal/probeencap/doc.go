// Package probeencap holds the tc egress program that encapsulates health-check probes
// through the VIP of a tunnel service (IPIP, GUE or FOU over IPv4), so that they reach the
// backend the way the data path's packets do. The program (probeencap.c) is compiled with
// bpf2go; the generated objects are committed. Regenerate with `go generate`.
package probeencap
