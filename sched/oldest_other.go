//go:build !amd64

package sched

// hasAVX2 is false off amd64: victim takes oldestPairGo.
const hasAVX2 = false

// oldestPairAVX2 is oldestPairGo off amd64 (never called: hasAVX2 is false).
func oldestPairAVX2(s1, s2 *[ways]uint32, t uint32) (int, uint32) { return oldestPairGo(s1, s2, t) }

// maxAgeAVX2 is bucket.oldest's age off amd64 (never called: hasAVX2 is false).
func maxAgeAVX2(s *[ways]uint32, t uint32) uint32 { return uint32(oldestOf(s, t, ways-1) >> 8) }
