package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPopulateMaglevTable1 checks the fill loop against Table 1 of the Maglev paper.
func TestPopulateMaglevTable1(t *testing.T) {
	offsets := []uint64{3, 0, 3}
	skips := []uint64{4, 2, 1}
	got := PopulateMaglev(offsets, skips, []uint32{1, 1, 1}, 7)
	if want := []int{1, 0, 1, 0, 2, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("before: got %v, want %v", got, want)
	}
	got = PopulateMaglev(offsets, skips, []uint32{1, 0, 1}, 7)
	if want := []int{0, 0, 0, 0, 2, 2, 2}; !slices.Equal(got, want) {
		t.Errorf("B1 removed: got %v, want %v", got, want)
	}
	got = PopulateMaglev(offsets, skips, []uint32{0, 0, 0}, 7)
	if want := []int{-1, -1, -1, -1, -1, -1, -1}; !slices.Equal(got, want) {
		t.Errorf("no weights: got %v, want %v", got, want)
	}
}

func TestPopulateMaglevBadInput(t *testing.T) {
	for _, tc := range []struct {
		name           string
		offsets, skips []uint64
		weights        []uint32
		m              int
	}{
		{"length mismatch", []uint64{1}, []uint64{1, 2}, []uint32{1, 1}, 7},
		{"not prime", []uint64{1}, []uint64{1}, []uint32{1}, 8},
		{"zero size", nil, nil, nil, 0},
		{"skip multiple of m", []uint64{1}, []uint64{14}, []uint32{1}, 7},
		{"too large", []uint64{1}, []uint64{1}, []uint32{1}, 2147483647},
	} {
		if got := PopulateMaglev(tc.offsets, tc.skips, tc.weights, tc.m); got != nil {
			t.Errorf("%s: got %v, want nil", tc.name, got)
		}
	}
}

func TestPrimes(t *testing.T) {
	if !slices.Contains(Primes, DefaultTableSize) {
		t.Fatalf("DefaultTableSize %d not in Primes", DefaultTableSize)
	}
	for _, p := range Primes {
		if !isPrime(p) {
			t.Errorf("%d in Primes is not prime", p)
		}
	}
	for _, n := range []int{0, 1, 4, 65536, 65535, 7 * 13} {
		if isPrime(n) {
			t.Errorf("isPrime(%d) = true", n)
		}
	}
	if _, err := NewService(ServiceConfig{TableSize: 65536}, nil); err == nil {
		t.Error("NewService accepted table size 65536")
	}
}

// backends returns n up backends of weight 1 named b000, b001, ... with IDs 1..n.
func backends(n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{ID: uint32(i + 1), Name: fmt.Sprintf("b%03d", i), Weight: 1, Up: true}
	}
	return bs
}

// slotCounts returns the slots per backend position.
func slotCounts(table []int32, n int) []int {
	c := make([]int, n)
	for _, p := range table {
		if p >= 0 {
			c[p]++
		}
	}
	return c
}

func mustService(t testing.TB, cfg ServiceConfig, bs []Backend) *Service {
	t.Helper()
	s, err := NewService(cfg, bs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMaglevBalance(t *testing.T) {
	for _, m := range []int{251, 4093, 65537} {
		for _, n := range []int{1, 2, 3, 7, 100, 250} {
			s := mustService(t, ServiceConfig{TableSize: m}, backends(n))
			c := slotCounts(s.Table(), n)
			lo, hi := slices.Min(c), slices.Max(c)
			if hi-lo > 1 {
				t.Errorf("M=%d n=%d: slot counts range %d..%d", m, n, lo, hi)
			}
			if slices.Contains(s.Table(), -1) {
				t.Errorf("M=%d n=%d: empty slot", m, n)
			}
		}
	}
}

func TestMaglevWeightShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		n := 2 + rng.IntN(40)
		bs := backends(n)
		var total uint64
		for i := range bs {
			bs[i].Weight = uint32(rng.IntN(100)) // some zero
			total += uint64(bs[i].Weight)
		}
		bs[0].Up = false // down: no slots
		total -= uint64(bs[0].Weight)
		if total == 0 {
			continue
		}
		const m = 65537
		s := mustService(t, ServiceConfig{TableSize: m}, bs)
		c := slotCounts(s.Table(), n)
		for i, b := range bs {
			w := uint64(b.Weight)
			if !b.Up {
				w = 0
			}
			// Exact share: floor or ceil of m*w/total.
			lo := m * w / total
			if got := uint64(c[i]); got != lo && got != lo+1 || (w == 0 && got != 0) {
				t.Errorf("trial %d backend %d weight %d: %d slots, want %d or %d", trial, i, w, got, lo, lo+1)
			}
		}
	}
}

func TestMaglevWeightTwice(t *testing.T) {
	bs := backends(3)
	bs[1].Weight = 2
	s := mustService(t, ServiceConfig{TableSize: 65537}, bs)
	c := slotCounts(s.Table(), 3)
	if want := []int{16384, 32769, 16384}; !slices.Equal(c, want) {
		t.Errorf("slots %v, want %v", c, want)
	}
}

// TestMaglevDisruption removes 1 of 100 backends at M=65537 and counts the slots of the
// other 99 that changed owner.
func TestMaglevDisruption(t *testing.T) {
	bs := backends(100)
	before := mustService(t, ServiceConfig{}, bs)
	for _, gone := range []int{0, 37, 99} {
		rest := slices.Delete(slices.Clone(bs), gone, gone+1)
		after := mustService(t, ServiceConfig{}, rest)
		tb, ta := before.Table(), after.Table()
		moved, kept := 0, 0
		for i := range tb {
			if int(tb[i]) == gone {
				continue
			}
			kept++
			if before.Backend(int(tb[i])).ID != after.Backend(int(ta[i])).ID {
				moved++
			}
		}
		frac := float64(moved) / float64(kept)
		t.Logf("backend %d leaves: %d of %d other slots moved (%.3f%%)", gone, moved, kept, 100*frac)
		if frac >= 0.01 {
			t.Errorf("backend %d leaves: %.3f%% of other slots moved, want < 1%%", gone, 100*frac)
		}
		// The same happens when it goes down instead of leaving.
		down := slices.Clone(bs)
		down[gone].Up = false
		td := mustService(t, ServiceConfig{}, down).Table()
		for i := range ta {
			if after.Backend(int(ta[i])).ID != bs[td[i]].ID {
				t.Fatalf("slot %d: down and removed differ", i)
			}
		}
	}
}

// TestMaglevOrderIndependent builds the table from shuffled input and compares owners by name.
func TestMaglevOrderIndependent(t *testing.T) {
	bs := backends(50)
	for i := range bs {
		bs[i].Weight = uint32(1 + i%5)
	}
	ref := mustService(t, ServiceConfig{TableSize: 4093}, bs)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		sh := slices.Clone(bs)
		rng.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		s := mustService(t, ServiceConfig{TableSize: 4093}, sh)
		tr, ts := ref.Table(), s.Table()
		for i := range tr {
			if ref.Backend(int(tr[i])).Name != s.Backend(int(ts[i])).Name {
				t.Fatalf("slot %d: %s vs %s", i, ref.Backend(int(tr[i])).Name, s.Backend(int(ts[i])).Name)
			}
		}
	}
}

// TestMaglevBuilderReuse checks that a reused Builder gives the same tables as fresh ones.
func TestMaglevBuilderReuse(t *testing.T) {
	var b Builder
	for _, n := range []int{100, 3, 250, 1, 0, 40} {
		bs := backends(n)
		s1, err := b.Build(ServiceConfig{TableSize: 8191}, bs)
		if err != nil {
			t.Fatal(err)
		}
		s2 := mustService(t, ServiceConfig{TableSize: 8191}, bs)
		if !slices.Equal(s1.Table(), s2.Table()) {
			t.Fatalf("n=%d: reused builder differs", n)
		}
	}
}

// TestMaglevGolden pins the table for a fixed backend set: a change here means every LB host
// running the old code would disagree with the new one about existing flows.
func TestMaglevGolden(t *testing.T) {
	bs := []Backend{
		{ID: 1, Name: "198.18.0.11:80", Weight: 1, Up: true},
		{ID: 2, Name: "198.18.0.12:80", Weight: 2, Up: true},
		{ID: 3, Name: "198.18.0.13:80", Weight: 1, Up: true},
	}
	s := mustService(t, ServiceConfig{TableSize: 251}, bs)
	got := fmt.Sprint(s.Table()[:40])
	const want = "[2 1 1 1 0 2 1 0 1 1 2 1 1 0 0 2 1 0 1 2 0 1 1 1 0 2 1 0 1 1 0 1 1 1 1 2 1 0 1 1]"
	if got != want {
		t.Errorf("table[:40] = %s, want %s", got, want)
	}
}

// referenceMaglev is the paper's Pseudocode 1 written literally, with the permutation table
// materialised: the slow reference for equal weights.
func referenceMaglev(offsets, skips []uint64, m int) []int {
	n := len(offsets)
	perm := make([][]int, n)
	for i := range perm {
		perm[i] = make([]int, m)
		for j := range m {
			perm[i][j] = int((offsets[i] + uint64(j)*skips[i]) % uint64(m))
		}
	}
	next := make([]int, n)
	entry := make([]int, m)
	for i := range entry {
		entry[i] = -1
	}
	filled := 0
	for {
		for i := range n {
			c := perm[i][next[i]]
			for entry[c] >= 0 {
				next[i]++
				c = perm[i][next[i]]
			}
			entry[c] = i
			next[i]++
			filled++
			if filled == m {
				return entry
			}
		}
	}
}

func TestPopulateMaglevReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, m := range []int{7, 251, 4093} {
		for range 10 {
			n := 1 + rng.IntN(30)
			offsets, skips, weights := make([]uint64, n), make([]uint64, n), make([]uint32, n)
			for i := range n {
				offsets[i] = uint64(rng.IntN(m))
				skips[i] = uint64(1 + rng.IntN(m-1))
				weights[i] = 3
			}
			if got, want := PopulateMaglev(offsets, skips, weights, m), referenceMaglev(offsets, skips, m); !slices.Equal(got, want) {
				t.Fatalf("m=%d n=%d: differs from the paper's loop", m, n)
			}
		}
	}
}
