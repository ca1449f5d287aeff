//go:build !amd64

package sched

// oldestPair returns the way i of the bucket pair whose last-seen time (s1 for b1's ways
// 0-7, s2 for b2's, as i-8) is the longest ago at tick t, the lowest i among equal ages,
// and that age: the victim of an eviction from a full pair.
func oldestPair(s1, s2 *[ways]uint32, t uint32) (int, uint32) { return oldestPairGo(s1, s2, t) }

const hasAVX2 = false
