package sched

// oldestPairGo is oldestPair in Go: the largest age<<8 | (15-i) over the 16 ways i of the
// pair (b1's ways 0-7, then b2's), by bucket.oldest's trees of conditional moves.
func oldestPairGo(s1, s2 *[ways]uint32, t uint32) (int, uint32) {
	v := max(oldestOf(s1, t, 15), oldestOf(s2, t, 7))
	return 15 - int(v&15), uint32(v >> 8)
}
