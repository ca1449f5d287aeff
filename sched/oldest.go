package sched

// oldestPairGo returns the way i of the bucket pair whose last-seen time (s1 for b1's ways
// 0-7, s2 for b2's, as i-8) is the longest ago at tick t, the lowest i among equal ages,
// and that age: the victim of an eviction from a full pair. It takes the largest
// age<<8 | (15-i) by bucket.oldest's trees of conditional moves; oldestPairAVX2 is the
// same in vector instructions.
func oldestPairGo(s1, s2 *[ways]uint32, t uint32) (int, uint32) {
	v := max(oldestOf(s1, t, 15), oldestOf(s2, t, 7))
	return 15 - int(v&15), uint32(v >> 8)
}

// EvictionSearch names the instructions a Core's search for the oldest entry runs on this
// CPU (the eviction from a full bucket pair, and Maintain's test of a swept bucket): "avx2"
// on an amd64 CPU with AVX2, else "scalar" (the same result, about 130 more instructions
// on a new flow into a full table).
func EvictionSearch() string {
	if hasAVX2 {
		return "avx2"
	}
	return "scalar"
}
