package sched

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
)

// Sizes of the live-flow benchmarks.
var liveSizes = []struct {
	name string
	n    int
}{{"1k", 1 << 10}, {"64k", 1 << 16}, {"1M", 1 << 20}}

func BenchmarkMaglevBuild(b *testing.B) {
	for _, tc := range []struct{ n, m int }{
		{100, 251}, {100, 4093}, {100, 65537}, {100, 1048573}, {1000, 65537}, {1000, 1048573},
	} {
		b.Run(fmt.Sprintf("backends=%d/M=%d", tc.n, tc.m), func(b *testing.B) {
			bs := backends(tc.n)
			var bld Builder
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				if _, err := bld.Build(ServiceConfig{TableSize: tc.m}, bs); err != nil {
					b.Fatal(err)
				}
			}
			cpu.stop(b)
		})
	}
}

// benchSecret keys the table hash the ristretto baselines use, like a core's.
var benchSecret = newTableSecret()

// xxhashSeed0 is the flow hash before issue 12 (xxhash, seed 0, of the canonical
// encoding), kept as the baseline of BenchmarkHash.
func xxhashSeed0(k *Key) uint64 {
	var b [keyBytes]byte
	k.encode(&b)
	return xxhash.Sum64(b[:])
}

// BenchmarkHash: the connection-table hash (per packet), the keyed SipHash flow hash (per
// new flow, for Maglev) and source hash (per new flow of a source-hash service), and the
// unkeyed xxhash they replace; of an IPv4 key.
func BenchmarkHash(b *testing.B) {
	c := mustCore(b, CoreConfig{Capacity: 64})
	hk := DefaultHashKey()
	for _, h := range []struct {
		name string
		f    func(*Key) uint64
		v6   bool // an IPv6 flow's key (the 38-byte encoding), else an IPv4 one
	}{
		{"table", c.Hash, false},
		{"flow-siphash", hk.Flow, false},
		{"source-siphash", hk.Source, false},
		{"xxhash-seed0", xxhashSeed0, false},
		{"flow-siphash6", hk.Flow, true},
	} {
		b.Run(h.name, func(b *testing.B) {
			k := flowKey(12345)
			if h.v6 {
				k = flowKey6(12345)
			}
			var sink uint64
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				sink += h.f(&k)
				k.SrcPort++
			}
			cpu.stop(b)
			_ = sink
		})
	}
}

// flowKey6 is flowKey's IPv6 form: client 2001:db8::x:port -> 2001:db8:1::10:80 (never sent).
func flowKey6(i uint32) Key {
	k := Key{Proto: protoTCP, DstPort: 80, SrcPort: uint16(1024 + i%60000), V6: true}
	copy(k.Src[:4], []byte{0x20, 0x01, 0x0d, 0xb8})
	binary.BigEndian.PutUint32(k.Src[12:], i/60000)
	copy(k.Dst[:6], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1})
	k.Dst[15] = 0x10
	return k
}

// liveCore returns a core of capacity cap with n live flows (keys[0:n]) of svc.
func liveCore(b *testing.B, svc *Service, capacity, n int) (*Core, []Key) {
	c := mustCore(b, CoreConfig{Capacity: capacity})
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = flowKey(uint32(i))
		c.Schedule(svc, &keys[i], FlagSYN, 0)
	}
	return c, keys
}

// stride walks a key slice in an order unrelated to insertion order (a prime step).
const stride = 7919

// walker steps through n keys by stride (mod n; every key once per round when n is a power
// of two).
type walker struct{ i, step, n int }

func newWalker(n int) walker { return walker{step: stride % n, n: n} }

func (w *walker) next() int {
	if w.i += w.step; w.i >= w.n {
		w.i -= w.n
	}
	return w.i
}

// hitCapacity is the table size for n live flows without evictions: two-choice 8-way
// buckets fill to about 75% before the first eviction.
func hitCapacity(n int) int { return max(DefaultCapacity, n*3/2) }

// BenchmarkScheduleHit: a packet of a known flow, 64k or 1M live flows in a table of 1M
// (1.5M for 1M flows, so that none was evicted), visited in a scattered order.
func BenchmarkScheduleHit(b *testing.B) {
	svc := mustService(b, ServiceConfig{}, backends(16))
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			c, keys := liveCore(b, svc, hitCapacity(sz.n), sz.n)
			i, w := 0, newWalker(len(keys))
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				i = w.next()
				c.Schedule(svc, &keys[i], FlagACK, 1)
			}
			cpu.stop(b)
			b.StopTimer()
			c.Maintain(1)
			if st := c.Stats(); st.Misses != uint64(sz.n) {
				b.Fatalf("misses %d, want only the %d preloads", st.Misses, sz.n)
			}
		})
	}
}

// BenchmarkScheduleBatchHit is BenchmarkScheduleHit the way a worker can run it: Prefetch
// for the 64 packets of a batch, then ScheduleHashed for each. One op is one batch; the
// per-packet figures are reported as ns/pkt and cpu-ns/pkt.
func BenchmarkScheduleBatchHit(b *testing.B) { benchBatch(b, batchPrefetch) }

// BenchmarkScheduleBatchNoPrefetch is the same batch without the prefetch passes: hash, then
// ScheduleHashed, packet by packet. Beside BenchmarkScheduleBatchHit it shows what
// overlapping the batch's misses gives.
func BenchmarkScheduleBatchNoPrefetch(b *testing.B) { benchBatch(b, batchNoPrefetch) }

// BenchmarkScheduleBatchHashGiven is BenchmarkScheduleBatchHit with the batch's table hashes
// computed before the timed loop, as if the XDP program had passed them in the frames'
// metadata: the most that lever could save.
func BenchmarkScheduleBatchHashGiven(b *testing.B) { benchBatch(b, batchHashGiven) }

// BenchmarkScheduleBatchPipelined is BenchmarkScheduleBatchHit the way dataplane's worker
// runs it: the headers asked for 8 hashes at a time as they are computed, and the entries 8
// at a time, 8 packets before their lookups, so that the misses overlap the lookups before
// them instead of waiting in passes of their own.
func BenchmarkScheduleBatchPipelined(b *testing.B) { benchBatch(b, batchPipelined) }

const (
	batchPrefetch = iota
	batchNoPrefetch
	batchHashGiven
	batchPipelined
)

func benchBatch(b *testing.B, mode int) {
	svc := mustService(b, ServiceConfig{}, backends(16))
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			c, keys := liveCore(b, svc, hitCapacity(sz.n), sz.n)
			// Every mode reads a flow's key and its precomputed hash from one element, as
			// a worker finds an XDP-computed hash in the frame's headroom next to the
			// packet: the modes differ only in what they do with them.
			type flow struct {
				k Key
				h uint64
			}
			flows := make([]flow, len(keys))
			for i := range keys {
				flows[i] = flow{keys[i], c.Hash(&keys[i])}
			}
			var batch [64]Key
			var hs [64]uint64
			i, w := 0, newWalker(len(keys))
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				for j := range batch {
					i = w.next()
					batch[j], hs[j] = flows[i].k, flows[i].h
				}
				switch mode {
				case batchPrefetch:
					c.PrefetchBatch(batch[:], hs[:])
				case batchNoPrefetch:
					for j := range batch {
						hs[j] = c.Hash(&batch[j])
					}
				case batchHashGiven:
					c.Prefetch(hs[:])
				case batchPipelined:
					for j := 0; j < len(batch); j += 8 {
						for k := j; k < j+8; k++ {
							hs[k] = c.Hash(&batch[k])
						}
						c.PrefetchHeaders(hs[j : j+8])
					}
					c.PrefetchEntries(hs[:8])
					for j := range batch {
						if j%8 == 0 && j+8 < len(batch) {
							c.PrefetchEntries(hs[j+8 : j+16])
						}
						c.ScheduleHashed(svc, &batch[j], hs[j], FlagACK, 1)
					}
					continue
				}
				for j := range batch {
					c.ScheduleHashed(svc, &batch[j], hs[j], FlagACK, 1)
				}
			}
			cpu.stop(b)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
			b.StopTimer()
			c.Maintain(1)
			if st := c.Stats(); st.Misses != uint64(sz.n) {
				b.Fatalf("misses %d, want only the %d preloads", st.Misses, sz.n)
			}
		})
	}
}

// BenchmarkScheduleMissInsert: a new flow into a full table (64k or 1M live flows, capacity
// the same): every insert schedules by Maglev and evicts the least recently seen of 16.
// The new keys are made before the timer starts, 4 per live flow, and taken in turn (each
// comes round again only after 4 table-fulls of inserts, long evicted: the benchmark checks
// that none hit); the clock moves 1 us per packet, so the entries' ages differ as they do
// under a flood. Making each key in the loop instead cost a store-forwarding stall per key
// (the hash reads 8-byte words of a key just written in smaller stores), a cost of the
// harness that a worker does not pay: it hashes its keys a pass after parsing them.
func BenchmarkScheduleMissInsert(b *testing.B) {
	svc := mustService(b, ServiceConfig{}, backends(16))
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			c, _ := liveCore(b, svc, sz.n, sz.n)
			fresh := make([]Key, 4*sz.n)
			for i := range fresh {
				fresh[i] = flowKey(uint32(sz.n + i))
			}
			i, now := 0, int64(0)
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				if i++; i == len(fresh) {
					i = 0
				}
				now += 1000
				c.Schedule(svc, &fresh[i], FlagSYN, now)
			}
			cpu.stop(b)
			if st := c.Stats(); st.Hits != 0 {
				b.Fatalf("%d hits: a fresh key was still in the table", st.Hits)
			}
		})
	}
}

// BenchmarkNewFlowFloor: the part of BenchmarkScheduleMissInsert that no table design can
// skip, on the same full table and the same fresh keys: the keyed table hash, the lookup
// that misses (the first bucket, and the second when the first has overflowed), and the
// keyed Maglev hash with its slot's backend. No way is freed and nothing is written.
// Beside BenchmarkScheduleHit it bounds from below what a new flow can cost against a hit;
// what a new flow costs above it is the eviction, the entry's write and the bookkeeping.
func BenchmarkNewFlowFloor(b *testing.B) {
	svc := mustService(b, ServiceConfig{}, backends(16))
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			c, _ := liveCore(b, svc, sz.n, sz.n)
			st := &c.svcs[svc.index]
			fresh := make([]Key, 4*sz.n)
			for i := range fresh {
				fresh[i] = flowKey(uint32(sz.n + i))
			}
			i, found, sum := 0, 0, 0
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				if i++; i == len(fresh) {
					i = 0
				}
				k := &fresh[i]
				h := c.Hash(k)
				b1, tag := c.t.first(h)
				w := b1.find(tag, k)
				if w < 0 && b1.over != 0 {
					w = c.t.second(h).find(tag, k)
				}
				if w >= 0 {
					found++
				}
				sum += c.pick(st, svc, k)
			}
			cpu.stop(b)
			if found != 0 || sum < 0 {
				b.Fatalf("%d fresh keys found in the table (pick sum %d)", found, sum)
			}
		})
	}
}

// BenchmarkSchedulePacket: one packet as the worker sees it, 1M-entry table holding 64k or
// 1M live flows: 31 of 32 packets belong to known flows, 1 starts a new flow (at 1M it
// evicts). Per strategy.
func BenchmarkSchedulePacket(b *testing.B) {
	for _, s := range []Strategy{Maglev, SourceHash, RoundRobin, WeightedRoundRobin, Random, LeastConn, LeastLoad} {
		svc := mustService(b, ServiceConfig{Strategy: s}, weighted(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16))
		for _, sz := range liveSizes {
			b.Run(fmt.Sprintf("%v/live=%s", s, sz.name), func(b *testing.B) {
				c, keys := liveCore(b, svc, DefaultCapacity, sz.n)
				i, next, w := 0, uint32(1<<24), newWalker(len(keys))
				var now int64
				b.ReportAllocs()
				cpu := startCPU(b)
				for b.Loop() {
					now++
					if now&31 == 0 {
						next++
						k := flowKey(next)
						c.Schedule(svc, &k, FlagSYN, now)
						continue
					}
					i = w.next()
					c.Schedule(svc, &keys[i], FlagACK, now)
				}
				cpu.stop(b)
			})
		}
	}
}

// newRistretto returns a ristretto cache sized for n flows, keyed by the flow hash, valued
// by the backend ID, as its README recommends (NumCounters 10x the items).
func newRistretto(tb testing.TB, n int) *ristretto.Cache[uint64, uint32] {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, uint32]{
		NumCounters:        int64(10 * n),
		MaxCost:            int64(n),
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// BenchmarkRistrettoHit: Get of a present flow, beside BenchmarkScheduleHit (same sizes,
// same scattered order; hashing included as in Schedule).
func BenchmarkRistrettoHit(b *testing.B) {
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			rc := newRistretto(b, sz.n)
			keys := make([]Key, sz.n)
			for i := range keys {
				keys[i] = flowKey(uint32(i))
				rc.Set(benchSecret.hash(&keys[i]), uint32(i%16), 1)
			}
			rc.Wait()
			i, hits, w := 0, 0, newWalker(len(keys))
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				i = w.next()
				if _, ok := rc.Get(benchSecret.hash(&keys[i])); ok {
					hits++
				}
			}
			cpu.stop(b)
			b.ReportMetric(float64(hits)/float64(b.N), "hit-ratio")
		})
	}
}

// BenchmarkRistrettoMissInsert: Get (miss) then Set of a new flow into a full cache, beside
// BenchmarkScheduleMissInsert.
func BenchmarkRistrettoMissInsert(b *testing.B) {
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			rc := newRistretto(b, sz.n)
			for i := range sz.n {
				k := flowKey(uint32(i))
				rc.Set(benchSecret.hash(&k), 1, 1)
			}
			rc.Wait()
			next := uint32(sz.n)
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				next++
				k := flowKey(next)
				h := benchSecret.hash(&k)
				if _, ok := rc.Get(h); !ok {
					rc.Set(h, 1, 1)
				}
			}
			cpu.stop(b)
		})
	}
}

// heapAfter returns the live heap after a GC.
func heapAfter() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestConnTableVersusRistretto measures, beside each other: whether an insert is visible to
// the very next lookup, how many of a flood's flows are kept, and the memory per flow. Our
// table must see every insert at once; ristretto's numbers are reported (they depend on its
// asynchronous Set and admission policy, so they are not asserted).
func TestConnTableVersusRistretto(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	const n = 1 << 16
	svc := mustService(t, ServiceConfig{}, backends(16))

	// 1. Visibility: insert, then look up at once.
	c := mustCore(t, CoreConfig{Capacity: n})
	rc := newRistretto(t, n)
	const probes = 10000
	ours, theirs := 0, 0
	for i := range uint32(probes) {
		k := flowKey(i)
		p := c.Schedule(svc, &k, FlagSYN, 0)
		c.Maintain(0)
		before := c.Stats().Hits
		if c.Schedule(svc, &k, FlagACK, 0) == p {
			c.Maintain(0)
			if c.Stats().Hits == before+1 {
				ours++
			}
		}
		h := benchSecret.hash(&k)
		rc.Set(h, uint32(p), 1)
		if _, ok := rc.Get(h); ok {
			theirs++
		}
	}
	t.Logf("insert visible to the next lookup: sched %d/%d, ristretto %d/%d", ours, probes, theirs, probes)
	if ours != probes {
		t.Errorf("sched: only %d of %d inserts visible to the next lookup", ours, probes)
	}

	// 2. Retention: offer 2x capacity distinct flows, one per microsecond (Wait after each
	// batch of 64, as a worker would at best), then ask for the most recent capacity/2 flows.
	c = mustCore(t, CoreConfig{Capacity: n})
	rc = newRistretto(t, n)
	total := uint32(2 * n)
	for i := range total {
		k := flowKey(i)
		p := c.Schedule(svc, &k, FlagSYN, int64(i)*1000)
		rc.Set(benchSecret.hash(&k), uint32(p), 1)
		if i%64 == 63 {
			rc.Wait()
		}
	}
	rc.Wait()
	keptOurs, keptTheirs := 0, 0
	end := int64(total) * 1000
	c.Maintain(end)
	missesBefore := c.Stats().Misses
	for i := total - n/2; i < total; i++ {
		k := flowKey(i)
		c.Schedule(svc, &k, FlagACK, end)
		if _, ok := rc.Get(benchSecret.hash(&k)); ok {
			keptTheirs++
		}
	}
	c.Maintain(end)
	keptOurs = n/2 - int(c.Stats().Misses-missesBefore)
	t.Logf("of the last %d flows of a %d-flow flood into %d entries: sched keeps %d, ristretto %d", n/2, total, n, keptOurs, keptTheirs)
	if keptOurs < n/2*99/100 {
		t.Errorf("sched kept only %d of the %d most recent flows", keptOurs, n/2)
	}

	// 3. Memory for 1M flows.
	const big = 1 << 20
	h0 := heapAfter()
	cb := mustCore(t, CoreConfig{Capacity: big})
	for i := range uint32(big) {
		k := flowKey(i)
		cb.Schedule(svc, &k, FlagSYN, 0)
	}
	h1 := heapAfter()
	rb := newRistretto(t, big)
	for i := range uint32(big) {
		k := flowKey(i)
		rb.Set(benchSecret.hash(&k), 1, 1)
	}
	rb.Wait()
	h2 := heapAfter()
	mem := float64(int64(h1)-int64(h0)) + float64(cb.Capacity()*BytesPerEntry) // its table is mapped outside the heap
	t.Logf("memory for %d flows: sched %.1f MiB (%.0f B/flow), ristretto %.1f MiB (%.0f B/flow)",
		big, mem/(1<<20), mem/big, float64(h2-h1)/(1<<20), float64(h2-h1)/big)
	if mem/big > 64 {
		t.Errorf("sched: %.0f bytes per live flow, want at most 64", mem/big)
	}
	runtime.KeepAlive(cb)
	runtime.KeepAlive(rb)
}

// BenchmarkBaselineGoMap is the reference the connection table is measured against in the
// same run: a Go map from flow key to backend position, same keys, same scattered order.
func BenchmarkBaselineGoMap(b *testing.B) { benchGoMap(b, false) }

// BenchmarkBaselineGoMapPresized is BenchmarkBaselineGoMap with the map made for as many
// entries as the table the hit benchmarks use (make's size hint: 1M for 1k and 64k flows),
// so that its flows are as spread out in memory as the table's: what the map costs at the
// table's density.
func BenchmarkBaselineGoMapPresized(b *testing.B) { benchGoMap(b, true) }

func benchGoMap(b *testing.B, presized bool) {
	for _, sz := range liveSizes {
		b.Run("live="+sz.name, func(b *testing.B) {
			hint := sz.n
			if presized {
				hint = hitCapacity(sz.n)
			}
			m := make(map[Key]int32, hint)
			keys := make([]Key, sz.n)
			for i := range keys {
				keys[i] = flowKey(uint32(i))
				m[keys[i]] = int32(i % 16)
			}
			i, hits, w := 0, 0, newWalker(len(keys))
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				i = w.next()
				if _, ok := m[keys[i]]; ok {
					hits++
				}
			}
			cpu.stop(b)
			if hits != b.N {
				b.Fatalf("%d hits of %d", hits, b.N)
			}
		})
	}
}
