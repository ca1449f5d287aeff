// Package ipvs writes the services of an xlb configuration as Linux IPVS rules, in the
// input format of ipvsadm-restore (ipvsadm -R), so LVS can be measured against xlb on the
// same service definition: direct routing (-g), IPIP tunnel (-i) and NAT (-m), the
// backends' weights, and xlb's schedulers mapped to IPVS's (maglev to mh, source-hash to sh,
// the others to their IPVS names), with a note wherever IPVS behaves differently or cannot
// say what the configuration says (health checks, fallback backends, disabled backends, a
// tunnel's outer source). Check reads the same format back against ipvsadm's grammar: the
// rules can be verified on a host without ip_vs. `xlb export ipvsadm` is its command line.
package ipvs
