package sched

import "golang.org/x/sys/cpu"

// hasAVX2 selects oldestPairAVX2 (x86-64-v3 and later CPUs: Haswell, Zen).
var hasAVX2 = cpu.X86.HasAVX2

// oldestPairAVX2 is oldestPairGo in AVX2 (oldest_amd64.s): the 16 ages are two vector
// subtractions, their maximum a reduction of five steps, the way a compare back with it;
// about 25 instructions where the scalar tree takes 130, on every new flow into a full
// table. victim calls it itself when the CPU has AVX2 (a function that chose between the
// two would be a call too big to inline).
//
//go:noescape
func oldestPairAVX2(s1, s2 *[ways]uint32, t uint32) (w int, age uint32)

// maxAgeAVX2 is the age of bucket.oldest (the largest t - s[w]) in AVX2: Maintain's test
// of a bucket it sweeps, 8 buckets a batch.
//
//go:noescape
func maxAgeAVX2(s *[ways]uint32, t uint32) uint32
