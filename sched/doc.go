// Package sched picks a backend for every new flow of a load-balanced service and keeps
// established flows on the backend they started on. A control goroutine builds an immutable
// [Service] snapshot (the backends, their weights and health, a weighted Maglev lookup table
// and the strategy) off the hot path and publishes it with atomic.Pointer; each packet worker
// owns one [Core] (a fixed-size, set-associative connection table plus per-core strategy
// state, not safe for concurrent use) and calls [Core.Schedule] per packet with the flow
// [Key], the TCP flags and a clock reading taken once per batch. Schedule takes no locks,
// shares no mutable state between cores and allocates nothing once a core has seen a
// service's snapshot; [Core.PrefetchBatch] with [Core.ScheduleHashed] (or [Core.ScheduleFlow],
// which also says whether the packet started a flow) does a batch's table
// lookups with their cache misses overlapped ([Core.PrefetchHeaders] and
// [Core.PrefetchEntries] spread them over a worker's own work). Hashes are keyed: the table's with a random
// secret per Core (nobody outside can aim a flood at a live flow's buckets), the Maglev
// lookup's with the cluster-wide [HashKey] (every host picks the same backend; nobody
// without the key can aim traffic at one). A new flow into a full table evicts the least
// recently seen of its two buckets' 16 entries, an idle-expired one first (the search runs
// in AVX2 where the CPU has it, see [EvictionSearch]). Strategies: consistent Maglev hashing of the flow or of the client
// address, round-robin, smooth weighted round-robin, weighted random, weighted
// least-connections and least-load (see [Strategy]). The package imports nothing of the
// project: [Key] has the exact field list of encap.FlowKey so a plain conversion joins them.
package sched
