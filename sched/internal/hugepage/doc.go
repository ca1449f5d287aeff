// Package hugepage asks the kernel to back large, long-lived slices with transparent huge
// pages (madvise MADV_HUGEPAGE), which cuts the TLB misses of random access over tens of
// megabytes, such as a connection-table lookup. It is advice: on a kernel or configuration
// without transparent huge pages it does nothing and reports why.
package hugepage
