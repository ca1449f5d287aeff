package sched

import (
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultTableSize is the Maglev table size M used when a ServiceConfig leaves it 0. The
// paper recommends M well above 100 times the number of backends; 65537 serves up to a few
// hundred backends with under 1% imbalance.
const DefaultTableSize = 65537

// Primes lists the table sizes a ServiceConfig may ask for: primes, so that every backend's
// permutation (offset + j*skip mod M) visits every slot.
var Primes = []int{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537, 131071, 262139, 524287, 1048573}

// maxTableSize bounds PopulateMaglev's m (the largest of Primes is far below it).
const maxTableSize = 1 << 24

// Seeds of the two hashes of a backend's name that give its permutation. Fixed, so every LB
// host builds the same table from the same backend set.
const (
	seedOffset = 0x786c622d6f666673 // "xlb-offs"
	seedSkip   = 0x786c622d736b6970 // "xlb-skip"
)

// isPrime reports whether n is prime (trial division: only used to validate inputs).
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// PopulateMaglev fills a Maglev table of size m from the given permutations, following the
// loop of Pseudocode 1 in Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer" (NSDI 2016): backends take turns, each claiming the next free slot of its
// permutation offsets[i] + j*skips[i] (mod m), until the table is full.
//
// Weights follow section 3.4 (relative frequency of turns): per round a backend earns its
// weight in credit and takes a turn for every max-weight of credit, so a backend of weight 2
// takes turns twice as often as one of weight 1; each backend's slot count is capped at its
// exact proportional share of m (largest remainder, ties to the lower index), so the shares
// are exact. A weight of 0 gives no slots. With equal weights this is exactly the paper's
// loop. Entries are backend indexes, or -1 everywhere when no backend has a weight.
//
// It returns nil when the slices differ in length, m is not a prime of at most maxTableSize,
// or a skip is 0 mod m.
func PopulateMaglev(offsets, skips []uint64, weights []uint32, m int) []int {
	if len(offsets) != len(skips) || len(skips) != len(weights) || m > maxTableSize || !isPrime(m) {
		return nil
	}
	for _, s := range skips {
		if s%uint64(m) == 0 {
			return nil
		}
	}
	var b Builder
	t := make([]int32, m)
	b.fill(t, offsets, skips, weights)
	out := make([]int, m)
	for i, v := range t {
		out[i] = int(v)
	}
	return out
}

// Builder builds Service snapshots and keeps its scratch buffers between builds, so control
// can rebuild a service's table on every health change without regrowing them. Only the
// snapshot itself (backends, table) is allocated per build. A Builder is not safe for
// concurrent use; the zero value is ready.
type Builder struct {
	offsets, skips []uint64
	weights        []uint32
	order          []int32 // backend positions sorted by name
	next           []uint64
	quota, count   []uint64
	credit         []uint64
	active         []int32
	rem            []int32
	digest         *xxhash.Digest
}

// permutation returns a backend's Maglev offset and skip for table size m.
func (b *Builder) permutation(name string, m uint64) (offset, skip uint64) {
	if b.digest == nil {
		b.digest = xxhash.NewWithSeed(seedOffset)
	}
	b.digest.ResetWithSeed(seedOffset)
	b.digest.WriteString(name)
	h1 := b.digest.Sum64()
	b.digest.ResetWithSeed(seedSkip)
	b.digest.WriteString(name)
	h2 := b.digest.Sum64()
	return h1 % m, h2%(m-1) + 1
}

// grow returns s with length n, reusing its array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// fill writes the weighted Maglev table into t (len(t) = m, prime). Inputs are validated by
// the caller: equal lengths, skips non-zero mod m.
func (b *Builder) fill(t []int32, offsets, skips []uint64, weights []uint32) {
	m := uint64(len(t))
	n := len(weights)
	for i := range t {
		t[i] = -1
	}
	var total uint64
	for _, w := range weights {
		total += uint64(w)
	}
	if total == 0 {
		return
	}
	b.quota = grow(b.quota, n)
	b.count = grow(b.count, n)
	b.credit = grow(b.credit, n)
	b.next = grow(b.next, n)
	b.rem = b.rem[:0]
	b.active = b.active[:0]
	// Exact shares: floor(m*w/total), then one more slot to the largest remainders.
	var given uint64
	for i, w := range weights {
		hi, lo := bits.Mul64(m, uint64(w))
		q, _ := bits.Div64(hi, lo, total)
		b.quota[i] = q
		given += q
		b.count[i] = 0
		b.credit[i] = 0
		b.next[i] = offsets[i] % m
		if w > 0 {
			b.rem = append(b.rem, int32(i))
			b.active = append(b.active, int32(i))
		}
	}
	remainder := func(i int32) uint64 {
		hi, lo := bits.Mul64(m, uint64(weights[i]))
		_, r := bits.Div64(hi, lo, total)
		return r
	}
	slices.SortStableFunc(b.rem, func(x, y int32) int {
		rx, ry := remainder(x), remainder(y)
		switch {
		case rx > ry:
			return -1
		case rx < ry:
			return 1
		}
		return 0
	})
	for _, i := range b.rem[:m-given] {
		b.quota[i]++
	}
	// Backends whose quota is 0 (tiny weights) never take a turn.
	b.active = slices.DeleteFunc(b.active, func(i int32) bool { return b.quota[i] == 0 })

	wmax := func() uint64 {
		var x uint64
		for _, i := range b.active {
			x = max(x, uint64(weights[i]))
		}
		return x
	}
	top := wmax()
	for filled := uint64(0); filled < m; {
		full := false
		for _, i := range b.active {
			if b.count[i] == b.quota[i] {
				continue
			}
			b.credit[i] += uint64(weights[i])
			if b.credit[i] < top {
				continue
			}
			b.credit[i] -= top
			// Pseudocode 1: claim the next free slot of i's permutation.
			c, skip := b.next[i], skips[i]%m
			for t[c] >= 0 {
				if c += skip; c >= m {
					c -= m
				}
			}
			t[c] = i
			if c += skip; c >= m {
				c -= m
			}
			b.next[i] = c
			b.count[i]++
			filled++
			if b.count[i] == b.quota[i] {
				full = true
			}
			if filled == m {
				break
			}
		}
		if full {
			b.active = slices.DeleteFunc(b.active, func(i int32) bool { return b.count[i] == b.quota[i] })
			top = wmax()
		}
	}
}

// lookupSlot maps a 64-bit hash to a slot of a table of size m (multiply-high: uniform
// without a division).
func lookupSlot(h uint64, m int) int {
	hi, _ := bits.Mul64(h, uint64(m))
	return int(hi)
}
