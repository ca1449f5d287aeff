package sched

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestParseStrategy(t *testing.T) {
	for s := range numStrategies {
		got, err := ParseStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %v, %v", s.String(), got, err)
		}
		var u Strategy
		b, err := s.MarshalText()
		if err != nil || u.UnmarshalText(b) != nil || u != s {
			t.Errorf("text round trip of %v: %q, %v -> %v", s, b, err, u)
		}
	}
	if _, err := Strategy(200).MarshalText(); !errors.Is(err, ErrUnknownStrategy) {
		t.Errorf("MarshalText of an unknown strategy: %v", err)
	}
	if s, err := ParseStrategy(""); err != nil || s != Maglev {
		t.Errorf("empty name: %v, %v", s, err)
	}
	if _, err := ParseStrategy("lc"); !errors.Is(err, ErrUnknownStrategy) {
		t.Errorf("lc: %v", err)
	}
	if got := Strategy(200).String(); got != "Strategy(200)" {
		t.Errorf("String of unknown: %q", got)
	}
}

// newFlows schedules n new flows on c (one packet each) and returns the count per position.
func newFlows(c *Core, svc *Service, from uint32, n int) []int {
	counts := make([]int, svc.Len())
	for i := range uint32(n) {
		k := flowKey(from + i)
		if p := c.Schedule(svc, &k, FlagSYN, 0); p >= 0 {
			counts[p]++
		}
	}
	return counts
}

func weighted(ws ...uint32) []Backend {
	bs := backends(len(ws))
	for i, w := range ws {
		bs[i].Weight = w
	}
	return bs
}

// TestStrategyDistribution checks each strategy's share of new flows per backend. Backend 3
// (weight 4) is down and backend 4 drained: neither may get a new flow.
func TestStrategyDistribution(t *testing.T) {
	bs := weighted(1, 2, 3, 4, 5)
	bs[3].Up = false
	bs[4].Weight = 0
	const n = 60000
	for _, tc := range []struct {
		s    Strategy
		want []float64 // expected share per position
		tol  float64   // allowed absolute error of a share
	}{
		{Maglev, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0.01},
		{FlowHash, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0.01},
		{RoundRobin, []float64{1. / 3, 1. / 3, 1. / 3, 0, 0}, 0},
		{WeightedRoundRobin, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0},
		{Random, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0.01},
		{LeastConn, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0.0001},
		{LeastLoad, []float64{1. / 6, 2. / 6, 3. / 6, 0, 0}, 0},
	} {
		svc := mustService(t, ServiceConfig{Strategy: tc.s}, bs)
		c := mustCore(t, CoreConfig{Capacity: 1 << 17})
		got := newFlows(c, svc, 0, n)
		for i, w := range tc.want {
			share := float64(got[i]) / n
			if math.Abs(share-w) > tc.tol+1e-9 {
				t.Errorf("%v: backend %d got %.4f of new flows, want %.4f (counts %v)", tc.s, i, share, w, got)
			}
		}
	}
}

// TestSourceHash: all connections of a client go to one backend, and clients spread.
func TestSourceHash(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: SourceHash}, backends(4))
	c := mustCore(t, CoreConfig{Capacity: 1 << 16})
	counts := make([]int, 4)
	for client := range 2000 {
		home := -1
		for port := range 20 {
			k := flowKey(0)
			k.Src[2], k.Src[3] = byte(client>>8), byte(client)
			k.SrcPort = uint16(1024 + port)
			p := c.Schedule(svc, &k, FlagSYN, 0)
			if home < 0 {
				home = p
				counts[p]++
			} else if p != home {
				t.Fatalf("client %d: port %d went to %d, port 0 to %d", client, k.SrcPort, p, home)
			}
		}
	}
	for i, n := range counts {
		if n < 400 || n > 600 {
			t.Errorf("backend %d got %d of 2000 clients (%v)", i, n, counts)
		}
	}
}

// TestSmoothWRRSequence checks nginx's example: weights 5, 1, 1 give a a b a c a a.
func TestSmoothWRRSequence(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: WeightedRoundRobin}, weighted(5, 1, 1))
	c := mustCore(t, CoreConfig{Capacity: 64})
	var seq []int
	for i := range uint32(14) {
		k := flowKey(i)
		seq = append(seq, c.Schedule(svc, &k, FlagSYN, 0))
	}
	if want := []int{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}; !slices.Equal(seq, want) {
		t.Errorf("sequence %v, want %v", seq, want)
	}
}

// TestLeastConnFillsTheEmptiest: with one backend already holding flows, new flows go to the
// others until the counts are even; closing flows (expiry) frees room.
func TestLeastConnFillsTheEmptiest(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 1 << 12})
	one := mustService(t, ServiceConfig{Strategy: LeastConn}, backends(1))
	// 30 flows on b000 while it is alone.
	newFlows(c, one, 0, 30)
	three := mustService(t, ServiceConfig{Strategy: LeastConn}, backends(3))
	got := newFlows(c, three, 1000, 60)
	if want := []int{0, 30, 30}; !slices.Equal(got, want) {
		t.Errorf("new flows %v, want %v", got, want)
	}
	for i, want := range []int{30, 30, 30} {
		if n := c.ActiveFlows(three, i); n != want {
			t.Errorf("backend %d: %d active flows, want %d", i, n, want)
		}
	}
}

// TestLeastLoadFormula checks the effective weights: Weight*1000*(1-Load), at least 1.
func TestLeastLoadFormula(t *testing.T) {
	bs := weighted(2, 2, 2, 2, 2)
	for i, l := range []float64{0, 0.5, 1, math.NaN(), 1.5} {
		bs[i].Load = l
	}
	svc := mustService(t, ServiceConfig{Strategy: LeastLoad}, bs)
	if want := []uint64{2000, 1000, 1, 2000, 1}; !slices.Equal(svc.weight, want) {
		t.Errorf("effective weights %v, want %v", svc.weight, want)
	}
	if svc.Backend(4).Load != 1 || svc.Backend(3).Load != 0 {
		t.Errorf("loads not clamped: %v %v", svc.Backend(4).Load, svc.Backend(3).Load)
	}
}

// TestPerCoreIndependence: a core's strategy state is its own. Core 0's sequence is the same
// whether or not core 1 schedules in between, and cores start round-robin at different
// backends.
func TestPerCoreIndependence(t *testing.T) {
	for _, s := range []Strategy{RoundRobin, WeightedRoundRobin, Random, LeastConn, LeastLoad} {
		svc := mustService(t, ServiceConfig{Strategy: s}, weighted(1, 2, 3))
		alone := mustCore(t, CoreConfig{ID: 0, Capacity: 1 << 12})
		a := mustCore(t, CoreConfig{ID: 0, Capacity: 1 << 12})
		b := mustCore(t, CoreConfig{ID: 1, Capacity: 1 << 12})
		var seqAlone, seqA, seqB []int
		for i := range uint32(500) {
			k := flowKey(i)
			seqAlone = append(seqAlone, alone.Schedule(svc, &k, FlagSYN, 0))
			seqA = append(seqA, a.Schedule(svc, &k, FlagSYN, 0))
			k2 := flowKey(100000 + i)
			seqB = append(seqB, b.Schedule(svc, &k2, FlagSYN, 0))
		}
		if !slices.Equal(seqAlone, seqA) {
			t.Errorf("%v: core 0's sequence changed when core 1 scheduled", s)
		}
		if s == RoundRobin || s == Random {
			if slices.Equal(seqA[:20], seqB[:20]) {
				t.Errorf("%v: cores 0 and 1 made the same first 20 picks", s)
			}
		}
	}
}

func TestNewServiceErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ServiceConfig
		bs   []Backend
		err  error
	}{
		{"negative index", ServiceConfig{Index: -1}, nil, ErrBadService},
		{"index too large", ServiceConfig{Index: MaxServices}, nil, ErrBadService},
		{"strategy", ServiceConfig{Strategy: numStrategies}, nil, ErrUnknownStrategy},
		{"table size", ServiceConfig{TableSize: 1000}, nil, ErrTableSize},
		{"no name", ServiceConfig{}, []Backend{{ID: 1}}, ErrBadBackends},
		{"duplicate id", ServiceConfig{}, []Backend{{ID: 1, Name: "a"}, {ID: 1, Name: "b"}}, ErrBadBackends},
		{"duplicate name", ServiceConfig{}, []Backend{{ID: 1, Name: "a"}, {ID: 2, Name: "a"}}, ErrBadBackends},
	} {
		if _, err := NewService(tc.cfg, tc.bs); !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
		}
	}
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	if svc.TableSize() != 0 || svc.Table() != nil || svc.LookupHash(1) != -1 {
		t.Error("round-robin service built a Maglev table")
	}
	if svc.Backend(-1) != (Backend{}) || svc.Backend(3) != (Backend{}) || svc.Backend(2).ID != 3 {
		t.Error("Backend out of range")
	}
	if svc.Position(2) != 1 || svc.Position(99) != -1 {
		t.Errorf("Position: %d %d", svc.Position(2), svc.Position(99))
	}
}

// TestWRRSurvivesRebuild: a rebuilt snapshot with the same backends (control rebuilds every
// service on any change) continues the smooth sequence instead of restarting it.
func TestWRRSurvivesRebuild(t *testing.T) {
	bs := weighted(5, 1, 1)
	c := mustCore(t, CoreConfig{Capacity: 64})
	var seq []int
	for i := range uint32(14) {
		svc := mustService(t, ServiceConfig{Strategy: WeightedRoundRobin}, bs) // new snapshot each time
		k := flowKey(i)
		seq = append(seq, c.Schedule(svc, &k, FlagSYN, 0))
	}
	if want := []int{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}; !slices.Equal(seq, want) {
		t.Errorf("sequence %v, want %v", seq, want)
	}
}
