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
