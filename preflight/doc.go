// Package preflight checks whether a host is fit to run xlb before it takes
// traffic: the kernel and the features the data path uses (AF_XDP,
// bpf_link, need_wakeup), and for each configured interface its driver,
// native XDP and zero copy (both by really trying: an XDP attach and an
// AF_XDP bind, undone at once), its queues against the workers and CPUs,
// RSS hashing and IRQ affinity, its MTU against the UMEM frame size; then
// the memory-lock limit, the capabilities xlb run needs, the CPU frequency governor and CPU isolation of the
// workers' cores, and for direct-routing services the backends' ARP and
// reverse-path sysctls where this host can see them (a backend in one of
// its network namespaces). Run returns one Result per check, each pass,
// warn or fail with the fix; a Report with no fail is fit. `xlb preflight`
// prints it.
package preflight
