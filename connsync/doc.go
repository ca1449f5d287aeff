// Package connsync carries connection-table entries between load-balancer hosts, so that a
// host that takes over a flow (a VRRP backup that became master, an ECMP member the router
// moved the flow to) sends it to the backend it already had, whatever the scheduler.
//
// A sending host's workers push a fixed-size [Record] per connection-table change worth
// telling (an entry that reached a synced state, a state change, a periodic refresh of a
// live flow; a removal of an entry whose peers' copy would outlive it; a persistence
// template made, moved or refreshed past a threshold: [Kind]) onto their own
// single-producer ring ([Ring]: no locks, no allocation; a full
// ring drops the record and counts it). A [Node]'s sender drains the rings on a timer and
// packs the records into UDP messages bounded in size and in delay (sent to unicast peers and
// optionally a multicast group, one sendmmsg per drain), each with a sender id,
// a sequence number and a timestamp, authenticated with HMAC-SHA256 over the whole message
// under a key shared by the cluster ([Sealer.Seal], [Sealer.Open]). The receiver drops and counts every
// message that is short, malformed, oversized, unauthenticated, too old or replayed (a
// sliding window of sequence numbers per sender), and writes the records of the others
// into a [Table]: a fixed-size set-associative table that any worker reads without locks
// (a sequence lock per slot) and that evicts the oldest entry of a full bucket. A worker
// whose own connection table misses a flow asks the Table; an entry is used only while its
// backend is still in the service and up, and it expires by the same idle timeouts as the
// connection table's (sched.Timeouts). A removal removes the entry its sender wrote; a
// template is found by [Table.LookupTemplate] for a client new to the host that took over.
//
// See docs/connsync.md for the message format, the choices and the measurements.
package connsync
