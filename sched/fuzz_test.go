package sched

import (
	"errors"
	"strings"
	"testing"
)

// FuzzPopulateMaglev: any input gives nil or a full table whose slot counts are the exact
// weight shares, and never panics or hangs.
func FuzzPopulateMaglev(f *testing.F) {
	f.Add([]byte{3, 4, 1, 0, 2, 1, 3, 1, 1}, uint8(0))
	f.Add([]byte{3, 4, 1, 0, 2, 0, 3, 1, 1}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		primes := []int{2, 3, 7, 251, 509, 8, 1021}
		m := primes[int(size)%len(primes)]
		n := len(data) / 3
		offsets, skips, weights := make([]uint64, n), make([]uint64, n), make([]uint32, n)
		var total uint64
		for i := range n {
			offsets[i], skips[i], weights[i] = uint64(data[3*i]), uint64(data[3*i+1]), uint32(data[3*i+2]%8)
			total += uint64(weights[i])
		}
		got := PopulateMaglev(offsets, skips, weights, m)
		if got == nil {
			return
		}
		if len(got) != m {
			t.Fatalf("len %d, want %d", len(got), m)
		}
		counts := make([]uint64, n)
		for _, b := range got {
			switch {
			case b == -1 && total == 0:
			case b < 0 || b >= n:
				t.Fatalf("entry %d out of range (total weight %d)", b, total)
			default:
				counts[b]++
			}
		}
		for i, c := range counts {
			lo := uint64(m) * uint64(weights[i]) / max(total, 1)
			if c != lo && c != lo+1 || weights[i] == 0 && c != 0 {
				t.Fatalf("backend %d weight %d of %d: %d slots of %d", i, weights[i], total, c, m)
			}
		}
	})
}

// FuzzCore drives a small core with a byte-coded sequence of packets, clock steps, sweeps
// and snapshot changes, and checks its bookkeeping after every step: entries never exceed
// the capacity, the per-backend flow counts add up to the entries, answers name an up
// backend of the snapshot.
func FuzzCore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 201, 202, 0, 1, 2})
	f.Add([]byte{250, 0, 0, 0, 251, 1, 1, 1, 252, 7, 7, 253, 254, 255})
	f.Fuzz(func(t *testing.T, ops []byte) {
		bs := weighted(1, 2, 0, 3)
		strategies := []Strategy{Maglev, LeastConn, RoundRobin, WeightedRoundRobin, SourceHash, Random, LeastLoad}
		gen := 0
		build := func() *Service {
			s, err := NewService(ServiceConfig{Index: 1, Strategy: strategies[gen%len(strategies)], TableSize: 251}, bs)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		svc := build()
		c := mustCore(t, CoreConfig{Capacity: 32, SweepBuckets: 1, Timeouts: Timeouts{TCPClose: 3 << tickShift, TCPSynRecv: 20 << tickShift, UDP: 50 << tickShift}})
		var now int64
		for _, op := range ops {
			switch {
			case op < 200: // a packet of flow op%40
				k := flowKey(uint32(op % 40))
				if op%3 == 0 {
					k.Proto = protoUDP
				}
				flags := []uint8{FlagSYN, FlagACK, FlagFIN | FlagACK, FlagRST, 0}[op%5]
				p := c.Schedule(svc, &k, flags, now)
				if p >= svc.Len() || p >= 0 && !svc.Backend(p).Up {
					t.Fatalf("answer %d", p)
				}
			case op < 240:
				now += int64(op-199) << tickShift
			case op < 250:
				c.Maintain(now)
			default: // toggle a backend's health or weight: a new snapshot
				i := int(op) % len(bs)
				if op%2 == 0 {
					bs[i].Up = !bs[i].Up
				} else {
					bs[i].Weight = (bs[i].Weight + 1) % 3
				}
				gen++
				svc = build()
			}
			if c.Len() > c.Capacity() || c.Len() < 0 {
				t.Fatalf("len %d capacity %d", c.Len(), c.Capacity())
			}
			c.Prepare(svc)
			sum := 0
			for i := range svc.Len() {
				sum += c.ActiveFlows(svc, i)
			}
			if sum != c.Len() {
				t.Fatalf("active flows add up to %d, entries %d", sum, c.Len())
			}
			checkTable(t, c)
		}
	})
}

// FuzzParseHashKey: ParseHashKey never panics, accepts exactly the 32-hex-digit strings,
// and what it accepts prints back as the same digits in lower case.
func FuzzParseHashKey(f *testing.F) {
	f.Add(DefaultHashKeyHex)
	f.Add("00112233445566778899AABBCCDDEEFF")
	f.Add("0011")
	f.Add("zz112233445566778899aabbccddeeff")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHashKey(s)
		if err != nil {
			if !errors.Is(err, ErrHashKey) {
				t.Fatalf("%q: error %v is not ErrHashKey", s, err)
			}
			return
		}
		if got := k.String(); got != strings.ToLower(s) {
			t.Fatalf("%q parses to %s", s, got)
		}
		var u HashKey
		if err := u.UnmarshalText([]byte(s)); err != nil || u != k {
			t.Fatalf("UnmarshalText(%q) = %v, %v", s, u, err)
		}
	})
}
