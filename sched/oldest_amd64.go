package sched

import "golang.org/x/sys/cpu"

// hasAVX2 selects oldestPairAVX2 (x86-64-v3 and later CPUs: Haswell, Zen).
var hasAVX2 = cpu.X86.HasAVX2

// oldestPair returns the way i of the bucket pair whose last-seen time (s1 for b1's ways
// 0-7, s2 for b2's, as i-8) is the longest ago at tick t, the lowest i among equal ages,
// and that age: the victim of an eviction from a full pair. With AVX2, the 16 ages are
// two vector subtractions and their maximum a reduction of five steps: about 25
// instructions where the scalar tree (oldestPairGo) takes 130, on every new flow into a
// full table.
func oldestPair(s1, s2 *[ways]uint32, t uint32) (int, uint32) {
	if hasAVX2 {
		return oldestPairAVX2(s1, s2, t)
	}
	return oldestPairGo(s1, s2, t)
}

// oldestPairAVX2 is oldestPair in AVX2 (oldest_amd64.s).
//
//go:noescape
func oldestPairAVX2(s1, s2 *[ways]uint32, t uint32) (w int, age uint32)
