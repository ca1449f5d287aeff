package sched

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// flowKey returns a distinct IPv4 TCP key for i (client 198.18.x.y:port -> 198.19.0.10:80).
func flowKey(i uint32) Key {
	k := Key{Proto: protoTCP, DstPort: 80, SrcPort: uint16(1024 + i%60000)}
	k.Src[0], k.Src[1] = 198, 18
	binary.BigEndian.PutUint16(k.Src[2:], uint16(i/60000))
	copy(k.Dst[:], []byte{198, 19, 0, 10})
	return k
}

func mustCore(t testing.TB, cfg CoreConfig) *Core {
	t.Helper()
	c, err := NewCore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const sec = int64(time.Second)

func TestCoreHitMiss(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 1024})
	got := make(map[uint32]int)
	for i := range uint32(300) {
		k := flowKey(i)
		got[i] = c.Schedule(svc, &k, FlagSYN, 0)
	}
	for i := range uint32(300) {
		k := flowKey(i)
		if p := c.Schedule(svc, &k, FlagACK, sec); p != got[i] {
			t.Fatalf("flow %d: second packet to %d, first to %d", i, p, got[i])
		}
	}
	c.Maintain(sec)
	st := c.Stats()
	if st.Misses != 300 || st.Inserts != 300 || st.Hits != 300 || st.Entries != 300 || st.Evictions != 0 {
		t.Errorf("stats %+v", st)
	}
	if c.Len() != 300 || st.Capacity != 1024 || c.Capacity() != 1024 {
		t.Errorf("len %d capacity %d/%d", c.Len(), st.Capacity, c.Capacity())
	}
}

// sameBucketKeys returns n keys whose two candidate buckets are the same two buckets of
// c's table.
func sameBucketKeys(c *Core, n int) []Key {
	var ks []Key
	want1, want2 := -1, -1
	for i := uint32(0); len(ks) < n; i++ {
		k := flowKey(i)
		i1, i2 := c.t.index(c.Hash(&k))
		if want1 < 0 && i1 != i2 {
			want1, want2 = i1, i2
		}
		if i1 == want1 && i2 == want2 || i1 == want2 && i2 == want1 {
			ks = append(ks, k)
		}
	}
	return ks
}

// TestCoreTagCollision: two flows with the same first bucket and the same 16-bit tag
// live side by side, and each packet finds its own entry: the one whose tag matches first
// is not taken for the other (a lookup compares the whole key), and the second is found
// although the first match was not it.
func TestCoreTagCollision(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 64})
	type slot struct {
		bucket int
		tag    uint16
	}
	seen := map[slot]Key{}
	var k1, k2 Key
	for i := uint32(0); ; i++ {
		k := flowKey(i)
		h := c.Hash(&k)
		i1, _ := c.t.index(h)
		s := slot{i1, uint16(h) | 1}
		if o, ok := seen[s]; ok {
			k1, k2 = o, k
			break
		}
		seen[s] = k
	}
	p1 := c.Schedule(svc, &k1, FlagSYN, 0)
	p2 := c.Schedule(svc, &k2, FlagSYN, 0)
	if p1 == p2 {
		t.Fatalf("round robin gave both flows backend %d", p1)
	}
	for range 3 {
		if p := c.Schedule(svc, &k2, FlagACK, sec); p != p2 {
			t.Fatalf("second flow went to %d, its entry says %d", p, p2)
		}
		if p := c.Schedule(svc, &k1, FlagACK, sec); p != p1 {
			t.Fatalf("first flow went to %d, its entry says %d", p, p1)
		}
	}
	c.Maintain(sec)
	if st := c.Stats(); st.Inserts != 2 || st.Hits != 6 || st.Entries != 2 {
		t.Errorf("stats %+v, want 2 inserts, 6 hits, 2 entries", st)
	}
}

// TestCoreEvictsLeastRecentlySeen fills a bucket pair, leaves one flow untouched, and
// inserts one more: the untouched flow goes. In seconds the oldest age (18 s) is past the
// shortest timeout (10 s), so victim also looks for expired entries; in tenths of a second
// it is not, and the oldest is found without that scan.
func TestCoreEvictsLeastRecentlySeen(t *testing.T) {
	for _, unit := range []int64{sec, sec / 10} {
		t.Run(time.Duration(unit).String(), func(t *testing.T) {
			svc := mustService(t, ServiceConfig{Strategy: Maglev}, backends(4))
			c := mustCore(t, CoreConfig{Capacity: 64})
			const full = 2 * ways
			ks := sameBucketKeys(c, full+1)
			for i := range full {
				c.Schedule(svc, &ks[i], FlagSYN, int64(i)*unit)
			}
			// Touch all but flow 3, which becomes the least recently seen.
			for i := range full {
				if i != 3 {
					c.Schedule(svc, &ks[i], FlagACK, 20*unit)
				}
			}
			c.Maintain(20 * unit)
			if st := c.Stats(); st.Evictions != 0 || st.Entries != full {
				t.Fatalf("before: evictions %d entries %d, want 0 and %d", st.Evictions, st.Entries, full)
			}
			c.Schedule(svc, &ks[full], FlagSYN, 21*unit)
			c.Maintain(21 * unit)
			st := c.Stats()
			if st.Evictions != 1 || st.Entries != full {
				t.Fatalf("evictions %d entries %d, want 1 and %d", st.Evictions, st.Entries, full)
			}
			for i := range full + 1 {
				before := c.Stats().Misses
				c.Schedule(svc, &ks[i], FlagACK, 22*unit)
				c.Maintain(22 * unit)
				missed := c.Stats().Misses != before
				if missed != (i == 3) {
					t.Errorf("flow %d: missed=%v", i, missed)
				}
				if i == 3 {
					break // its re-insert evicts another flow
				}
			}
		})
	}
}

// TestCoreVictimPrefersExpired: in a full bucket pair, a closed flow past its timeout (10 s)
// makes room for a new flow before an older established one (900 s timeout) is evicted.
func TestCoreVictimPrefersExpired(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: Maglev}, backends(4))
	c := mustCore(t, CoreConfig{Capacity: 64})
	const full = 2 * ways
	ks := sameBucketKeys(c, full+1)
	for i := range full {
		c.Schedule(svc, &ks[i], FlagACK, int64(i)*sec) // established; flow 0 is the oldest
	}
	c.Schedule(svc, &ks[9], FlagRST|FlagACK, 100*sec) // closed at 100 s
	c.Schedule(svc, &ks[full], FlagSYN, 115*sec)      // flow 9 idle 15 s, flow 0 115 s
	c.Maintain(115 * sec)
	if st := c.Stats(); st.Expirations != 1 || st.Evictions != 0 || st.Entries != full {
		t.Fatalf("expirations %d evictions %d entries %d, want 1, 0, %d", st.Expirations, st.Evictions, st.Entries, full)
	}
	for _, f := range []struct {
		i   int
		hit bool
	}{{0, true}, {full, true}, {9, false}} {
		i, want := f.i, f.hit
		before := c.Stats().Hits
		c.Schedule(svc, &ks[i], FlagACK, 116*sec)
		c.Maintain(116 * sec)
		if hit := c.Stats().Hits != before; hit != want {
			t.Errorf("flow %d: hit=%v, want %v", i, hit, want)
		}
	}
}

func TestCoreTimeouts(t *testing.T) {
	def := DefaultTimeouts()
	for _, tc := range []struct {
		name    string
		proto   uint8
		flags   []uint8 // packets before the idle period
		timeout time.Duration
		reused  uint64 // entries replaced before the idle period (a SYN on a closed tuple)
	}{
		{"syn only", protoTCP, []uint8{FlagSYN}, def.TCPSynRecv, 0},
		{"established", protoTCP, []uint8{FlagSYN, FlagACK}, def.TCPEstablished, 0},
		{"mid-flow first packet", protoTCP, []uint8{FlagACK}, def.TCPEstablished, 0},
		{"fin", protoTCP, []uint8{FlagSYN, FlagACK, FlagFIN | FlagACK}, def.TCPFinWait, 0},
		{"rst", protoTCP, []uint8{FlagSYN, FlagACK, FlagRST}, def.TCPClose, 0},
		{"rst then fin stays closed", protoTCP, []uint8{FlagRST, FlagFIN}, def.TCPClose, 0},
		{"syn after fin reopens", protoTCP, []uint8{FlagFIN, FlagSYN}, def.TCPSynRecv, 1},
		{"udp", protoUDP, []uint8{0}, def.UDP, 0},
		{"icmp", 1, []uint8{0}, def.Other, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := mustService(t, ServiceConfig{}, backends(2))
			for _, idle := range []time.Duration{tc.timeout, tc.timeout + 2<<tickShift} {
				c := mustCore(t, CoreConfig{Capacity: 64})
				k := flowKey(7)
				k.Proto = tc.proto
				var now int64
				for _, f := range tc.flags {
					now += sec
					c.Schedule(svc, &k, f, now)
				}
				c.Schedule(svc, &k, 0, now+int64(idle))
				c.Maintain(now + int64(idle))
				st := c.Stats()
				expired := st.Expirations == 1+tc.reused
				if want := idle > tc.timeout; expired != want || st.Misses != uint64(1+b2i(want))+tc.reused {
					t.Errorf("idle %v (timeout %v): stats %+v", idle, tc.timeout, st)
				}
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCoreConfiguredTimeoutsAndSweep(t *testing.T) {
	svc := mustService(t, ServiceConfig{}, backends(2))
	c := mustCore(t, CoreConfig{Capacity: 4096, Timeouts: Timeouts{UDP: 5 * time.Second}, SweepBuckets: 16})
	for i := range uint32(1000) {
		k := flowKey(i)
		k.Proto = protoUDP
		c.Schedule(svc, &k, 0, 0)
	}
	c.Maintain(5 * sec) // not idle long enough
	if st := c.Stats(); st.Entries != 1000 || st.Expirations != 0 {
		t.Fatalf("after 5s: %+v", st)
	}
	// 4096/8 = 512 buckets, 16 per call: 32 calls go round once.
	for range 32 {
		c.Maintain(6 * sec)
	}
	if st := c.Stats(); st.Entries != 0 || st.Expirations != 1000 {
		t.Fatalf("after a full sweep at 6s: %+v", st)
	}
	if c.ActiveFlows(svc, 0)+c.ActiveFlows(svc, 1) != 0 {
		t.Error("active flows left after expiry")
	}
}

func TestCoreReschedule(t *testing.T) {
	bs := backends(4)
	svc := mustService(t, ServiceConfig{Index: 3}, bs)
	c := mustCore(t, CoreConfig{Capacity: 1 << 14})
	first := make([]int, 2000)
	for i := range first {
		k := flowKey(uint32(i))
		first[i] = c.Schedule(svc, &k, FlagSYN, 0)
	}
	// Backend 0 drained, backend 1 down, backend 2 removed.
	next := []Backend{bs[0], bs[1], bs[3]}
	next[0].Weight = 0
	next[1].Up = false
	svc2 := mustService(t, ServiceConfig{Index: 3}, next)
	var moved, kept int
	for i, p := range first {
		k := flowKey(uint32(i))
		q := c.Schedule(svc2, &k, FlagACK, sec)
		switch bs[p].ID {
		case bs[0].ID, bs[3].ID:
			if svc2.Backend(q).ID != bs[p].ID {
				t.Fatalf("flow %d on healthy backend %d moved to %d", i, bs[p].ID, svc2.Backend(q).ID)
			}
			kept++
		default:
			if svc2.Backend(q).ID != bs[3].ID {
				t.Fatalf("flow %d from backend %d went to %d, want 4 (the only one taking new flows)", i, bs[p].ID, svc2.Backend(q).ID)
			}
			moved++
		}
	}
	c.Maintain(sec)
	if st := c.Stats(); st.Rescheduled != uint64(moved) || st.Hits != uint64(kept) {
		t.Errorf("moved %d kept %d, stats %+v", moved, kept, st)
	}
	if got := c.ActiveFlows(svc2, 0) + c.ActiveFlows(svc2, 1) + c.ActiveFlows(svc2, 2); got != 2000 {
		t.Errorf("active flows %d, want 2000", got)
	}
	if c.ActiveFlows(svc2, 1) != 0 {
		t.Errorf("down backend still has %d flows", c.ActiveFlows(svc2, 1))
	}
	// Nobody left: no backend, the entry goes.
	none := mustService(t, ServiceConfig{Index: 3}, []Backend{{ID: 9, Name: "x", Weight: 1}})
	k := flowKey(0)
	if p := c.Schedule(none, &k, FlagACK, 2*sec); p != -1 {
		t.Errorf("no backend up: got %d", p)
	}
	if p := c.Schedule(nil, &k, FlagACK, 2*sec); p != -1 {
		t.Errorf("nil service: got %d", p)
	}
}

// TestCoreFlood offers ten times the capacity in new flows while a set of active flows keeps
// sending: memory stays flat and the active flows keep their backends.
func TestCoreFlood(t *testing.T) {
	const capacity = 1 << 16
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(16))
	c := mustCore(t, CoreConfig{Capacity: capacity})
	const active = 1000
	home := make([]int, active)
	for i := range home {
		k := flowKey(uint32(i))
		home[i] = c.Schedule(svc, &k, FlagSYN, 0)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rss0 := rss(t)
	now := int64(0)
	for n := uint32(0); n < 10*capacity; n++ {
		now += 1000 // 1us per packet
		k := flowKey(active + n)
		c.Schedule(svc, &k, FlagSYN, now)
		if n%2048 == 0 { // the active flows send too
			for i := range home {
				k := flowKey(uint32(i))
				if p := c.Schedule(svc, &k, FlagACK, now); p != home[i] {
					t.Fatalf("active flow %d moved from %d to %d after %d new flows", i, home[i], p, n)
				}
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	c.Maintain(now)
	checkTable(t, c)
	st := c.Stats()
	t.Logf("heap %d -> %d bytes; %+v", before.HeapAlloc, after.HeapAlloc, st)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 256<<10 {
		t.Errorf("heap grew by %d bytes during the flood", grew)
	}
	// The table is mapped outside the heap: the process may touch all of it, no more.
	if grew := rss(t) - rss0; grew > capacity*BytesPerEntry+8<<20 {
		t.Errorf("resident memory grew by %d bytes during the flood (table %d)", grew, capacity*BytesPerEntry)
	}
	if after.Mallocs-before.Mallocs > 1000 { // the test's own bookkeeping only
		t.Errorf("%d allocations during the flood", after.Mallocs-before.Mallocs)
	}
	if st.Entries > capacity || st.Evictions < 9*capacity-active {
		t.Errorf("entries %d evictions %d", st.Entries, st.Evictions)
	}
	for i := range home {
		k := flowKey(uint32(i))
		if p := c.Schedule(svc, &k, FlagACK, now); p != home[i] {
			t.Fatalf("active flow %d moved from %d to %d", i, home[i], p)
		}
	}
}

// rss returns the process's resident memory in bytes (VmRSS).
func rss(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

func TestNewCoreErrors(t *testing.T) {
	for _, cfg := range []CoreConfig{{Capacity: -1}, {SweepBuckets: -1}, {ID: -1}, {Capacity: MaxCapacity + 1}} {
		if _, err := NewCore(cfg); err == nil {
			t.Errorf("NewCore(%+v) accepted", cfg)
		}
	}
	c := mustCore(t, CoreConfig{Capacity: 3})
	if c.Capacity() != ways {
		t.Errorf("capacity 3 rounded to %d, want %d", c.Capacity(), ways)
	}
}

func TestEntrySize(t *testing.T) {
	if unsafe.Sizeof(bucket{}) != ways*BytesPerEntry || unsafe.Offsetof(bucket{}.ent) != 64 {
		t.Errorf("bucket is %d bytes (entries at %d), BytesPerEntry says %d", unsafe.Sizeof(bucket{}), unsafe.Offsetof(bucket{}.ent), ways*BytesPerEntry)
	}
}

// TestBucketOldest: bucket.oldest finds the oldest way wherever it is, the lowest of equal
// ages, and ages across the tick counter's wrap.
func TestBucketOldest(t *testing.T) {
	now := uint32(5)
	for old := range ways {
		for _, tie := range []int{-1, 0, 3, 7} {
			var b bucket
			for w := range ways {
				b.seen[w] = now - uint32(w) // young, all different
			}
			b.seen[old] = now - 1000 // 1000 ticks old: across the wrap (now < 1000)
			want := old
			if tie >= 0 && tie != old {
				b.seen[tie] = b.seen[old]
				want = min(old, tie)
			}
			for _, id := range []uint64{7, 15} {
				got := b.oldest(now, id)
				if age, w := uint32(got>>8), int(id-got&0xff); age != 1000 || w != want {
					t.Errorf("oldest way %d (tie %d), id %d: got age %d way %d, want 1000 way %d", old, tie, id, age, w, want)
				}
			}
		}
	}
}

// TestCoreTickWrap: the table's 32-bit tick counter wraps every 2^48 ns; ages and LRU order
// stay right across the wrap.
func TestCoreTickWrap(t *testing.T) {
	svc := mustService(t, ServiceConfig{}, backends(2))
	c := mustCore(t, CoreConfig{Capacity: 64})
	wrap := int64(1) << (32 + tickShift)
	start := wrap - 5*sec
	k := flowKey(1)
	k.Proto = protoUDP
	c.Schedule(svc, &k, 0, start)
	c.Schedule(svc, &k, 0, start+299*sec) // 294s after the wrap
	c.Maintain(start + 299*sec)
	if st := c.Stats(); st.Hits != 1 || st.Expirations != 0 {
		t.Fatalf("across the wrap: %+v", st)
	}
	c.Schedule(svc, &k, 0, start+700*sec) // idle 401s > 300s
	c.Maintain(start + 700*sec)
	if st := c.Stats(); st.Expirations != 1 {
		t.Fatalf("expiry across the wrap: %+v", st)
	}
	// LRU across the wrap: fill two buckets, the one seen before the wrap goes.
	c2 := mustCore(t, CoreConfig{Capacity: 64})
	ks := sameBucketKeys(c2, 2*ways+1)
	for i := range 2 * ways {
		now := wrap + int64(i)*sec
		if i == 5 {
			now = wrap - sec
		}
		c2.Schedule(svc, &ks[i], FlagACK, now)
	}
	c2.Schedule(svc, &ks[2*ways], FlagSYN, wrap+20*sec)
	c2.Maintain(wrap + 20*sec)
	before := c2.Stats().Misses
	c2.Schedule(svc, &ks[5], FlagACK, wrap+21*sec)
	c2.Maintain(wrap + 21*sec)
	if c2.Stats().Misses != before+1 {
		t.Error("the flow seen before the wrap was not the one evicted")
	}
}

// TestPrefetchBatch: PrefetchBatch gives the hashes, and PrefetchBatch + ScheduleHashed
// answers exactly as Schedule does, on a second core fed the same packets.
func TestPrefetchBatch(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: WeightedRoundRobin}, weighted(1, 2, 3))
	a := mustCore(t, CoreConfig{Capacity: 256})
	b := mustCore(t, CoreConfig{Capacity: 256})
	b.secret = a.secret // same buckets, so the same evictions
	keys := make([]Key, 64)
	hs := make([]uint64, 70)
	for round := range uint32(20) {
		for i := range keys {
			keys[i] = flowKey((round*37 + uint32(i)*11) % 500)
		}
		a.PrefetchBatch(keys, hs)
		for i := range keys {
			if hs[i] != a.Hash(&keys[i]) {
				t.Fatalf("hs[%d] = %x, want %x", i, hs[i], a.Hash(&keys[i]))
			}
			now := int64(round) * sec
			if pa, pb := a.ScheduleHashed(svc, &keys[i], hs[i], FlagACK, now), b.Schedule(svc, &keys[i], FlagACK, now); pa != pb {
				t.Fatalf("round %d packet %d: %d vs %d", round, i, pa, pb)
			}
		}
	}
	a.Maintain(0)
	b.Maintain(0)
	if a.Stats() != b.Stats() {
		t.Errorf("stats differ: %+v vs %+v", a.Stats(), b.Stats())
	}
	a.PrefetchBatch(keys, hs[:3]) // shorter hs: no panic
}

// TestTableHashSpread: whatever secret a core draws, a client's sequential connections
// (keys that differ in a few bits of the port and address) spread over the buckets: 60000
// of them fill a 128k-entry table to 46% without a single eviction, for 16 secrets.
func TestTableHashSpread(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(4))
	for range 16 {
		c := mustCore(t, CoreConfig{Capacity: 1 << 17})
		newFlows(c, svc, 0, 60000)
		c.Maintain(0)
		if st := c.Stats(); st.Evictions != 0 {
			t.Fatalf("secret %x: %d evictions at 46%% load", c.secret, st.Evictions)
		}
	}
}

// checkTable verifies the table's bookkeeping: every entry sits in one of its two buckets
// under its tag, in its second bucket exactly when its alt bit is set, and every bucket's
// overflow count is the number of its flows living in their second bucket.
func checkTable(t testing.TB, c *Core) {
	t.Helper()
	over := make([]uint32, len(c.t.b))
	n := 0
	for bi := range c.t.b {
		b := &c.t.b[bi]
		for w := range ways {
			if !b.used(w) {
				if b.alt&(1<<w) != 0 {
					t.Fatalf("bucket %d way %d: free but alt", bi, w)
				}
				continue
			}
			n++
			h := c.Hash(&b.ent[w].key)
			i1, i2 := c.t.index(h)
			if tag := uint16(b.tags[w>>2] >> (16 * (w & 3))); tag != uint16(h)|1 {
				t.Fatalf("bucket %d way %d: tag %x, hash says %x", bi, w, tag, uint16(h)|1)
			}
			switch alt := b.alt&(1<<w) != 0; {
			case alt && (bi != i2 || i1 == i2):
				t.Fatalf("bucket %d way %d: alt, but its buckets are %d, %d", bi, w, i1, i2)
			case alt:
				over[i1]++
			case bi != i1:
				t.Fatalf("bucket %d way %d: not alt, but its first bucket is %d", bi, w, i1)
			}
		}
	}
	for bi := range c.t.b {
		if c.t.b[bi].over != over[bi] {
			t.Fatalf("bucket %d: over %d, counted %d", bi, c.t.b[bi].over, over[bi])
		}
	}
	if n != c.Len() {
		t.Fatalf("%d entries in the table, Len %d", n, c.Len())
	}
}

// TestPrefetchLargeTable: above prefetchMin live entries Prefetch asks for lines (the path a
// small table skips); for a batch longer than its chunk, present and absent flows, buckets
// that have overflowed, and a sweep position about to wrap, it writes every hash, leaves
// the table exactly as it was, and allocates nothing. So do PrefetchHeaders,
// PrefetchEntries and the sweep's prefetch.
func TestPrefetchLargeTable(t *testing.T) {
	const capacity, live = 1 << 13, 7000 // 85% full: many first buckets have overflowed
	c := mustCore(t, CoreConfig{Capacity: capacity})
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(4))
	newFlows(c, svc, 0, live)
	if c.Len() <= prefetchMin {
		t.Fatalf("%d live entries, want more than %d", c.Len(), prefetchMin)
	}
	overflowed := 0
	for i := range c.t.b {
		if c.t.b[i].over != 0 {
			overflowed++
		}
	}
	if overflowed == 0 {
		t.Fatal("no bucket has overflowed: the second-bucket path is not exercised")
	}
	c.sweepAt = len(c.t.b) - 3
	keys := make([]Key, 3*prefetchChunk+5) // three chunks and a bit
	for i := range keys {
		keys[i] = flowKey(uint32(i * 37)) // present below live, absent above
	}
	hs := make([]uint64, len(keys))
	before := append([]bucket(nil), c.t.b...)
	c.PrefetchBatch(keys, hs)
	for i := range keys {
		if hs[i] != c.Hash(&keys[i]) {
			t.Fatalf("hash %d: %x, want %x", i, hs[i], c.Hash(&keys[i]))
		}
	}
	// The two steps apart, in uneven pieces, and the sweep's headers (Maintain's last step,
	// alone here because Maintain also expires entries).
	for i := 0; i < len(hs); i += 7 {
		c.PrefetchHeaders(hs[i:min(len(hs), i+7)])
	}
	c.PrefetchEntries(hs)
	c.PrefetchEntries(hs[:3])
	c.prefetchSweep()
	for i := range before {
		if before[i] != c.t.b[i] {
			t.Fatalf("bucket %d changed", i)
		}
	}
	if c.sweepAt != len(c.t.b)-3 {
		t.Fatalf("sweep position moved to %d", c.sweepAt)
	}
	for name, f := range map[string]func(){
		"PrefetchBatch":   func() { c.PrefetchBatch(keys, hs) },
		"PrefetchHeaders": func() { c.PrefetchHeaders(hs) },
		"PrefetchEntries": func() { c.PrefetchEntries(hs) },
		"prefetchSweep":   c.prefetchSweep,
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
	checkTable(t, c)
}

// TestQuickServiceReplaced: a service whose state Prepare has laid out anew for another
// snapshot of its index no longer takes ScheduleHashed's quick path; a packet of it lays
// its own state out again, with the flow counts carried back.
func TestQuickServiceReplaced(t *testing.T) {
	a := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	b := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(4))
	if a.Index() != b.Index() {
		t.Fatalf("indexes %d, %d", a.Index(), b.Index())
	}
	c := mustCore(t, CoreConfig{Capacity: 1024})
	sum := func(s *Service) (n int) {
		for i := range s.Len() {
			n += c.ActiveFlows(s, i)
		}
		return n
	}
	got := make([]int, 100)
	for i := range uint32(100) {
		k := flowKey(i)
		got[i] = c.ScheduleHashed(a, &k, c.Hash(&k), FlagSYN, 0)
	}
	k := flowKey(0)
	if p := c.ScheduleHashed(a, &k, c.Hash(&k), FlagACK, sec); p != got[0] || c.quick != a {
		t.Fatalf("hit to %d (first packet to %d), quick %p", p, got[0], c.quick)
	}
	c.Prepare(b)
	if c.quick != nil || sum(a) != 0 || sum(b) != 100 {
		t.Fatalf("after Prepare(b): quick %p, flows of a %d, of b %d", c.quick, sum(a), sum(b))
	}
	for i := range uint32(100) {
		k := flowKey(i)
		if p := c.ScheduleHashed(a, &k, c.Hash(&k), FlagACK, sec); p != got[i] {
			t.Fatalf("flow %d: to %d, first packet to %d", i, p, got[i])
		}
	}
	if sum(a) != 100 || c.quick != a {
		t.Fatalf("a laid out again: %d flows, quick %p", sum(a), c.quick)
	}
}

// TestScheduleFlowNew: ScheduleFlow reports a new flow exactly when NewFlows moves (a new
// entry, an expired flow scheduled again, a one-packet service's packet), and gives the
// backend Schedule gives on another core fed the same packets.
func TestScheduleFlowNew(t *testing.T) {
	plain := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	one := mustService(t, ServiceConfig{Index: 1, Strategy: RoundRobin, OnePacket: true}, backends(3))
	pers := persistSvc(t, RoundRobin, Persistence{Timeout: 10 * time.Second}, backends(3))
	for _, svc := range []*Service{plain, one, pers} {
		a := mustCore(t, CoreConfig{Capacity: 1024})
		b := mustCore(t, CoreConfig{Capacity: 1024})
		news := 0
		step := func(i uint32, flags uint8, now int64) {
			t.Helper()
			k := flowKey(i)
			n := a.NewFlows()
			p, isNew := a.ScheduleFlow(svc, &k, a.Hash(&k), flags, now)
			if moved := a.NewFlows() != n; isNew != moved {
				t.Fatalf("service %d, flow %d at %d: isNew %v, NewFlows moved %v", svc.Index(), i, now, isNew, moved)
			}
			if q := b.Schedule(svc, &k, flags, now); p != q {
				t.Fatalf("service %d, flow %d: ScheduleFlow to %d, Schedule to %d", svc.Index(), i, p, q)
			}
			if isNew {
				news++
			}
		}
		for i := range uint32(50) {
			step(i, FlagSYN, 0)
		}
		for i := range uint32(50) {
			step(i, FlagACK, sec) // hits, but for the one-packet service
		}
		for i := range uint32(50) {
			step(i, FlagACK, 3600*sec) // expired: scheduled anew
		}
		want := 100
		if svc == one {
			want = 150
		}
		if news != want {
			t.Errorf("service %d: %d new flows, want %d", svc.Index(), news, want)
		}
	}
}

// TestScheduleFlowNewEdges: ScheduleFlow's isNew on the paths that schedule no new entry
// (a flow moved off a backend gone down, a service with no backend up, a service at its
// table share whose new flow is forwarded without an entry) and on evictions from a full
// table: it reports a new flow exactly when NewFlows moves.
func TestScheduleFlowNewEdges(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 64})
	bs := backends(4)
	up := mustService(t, ServiceConfig{Strategy: Maglev}, bs)
	down := slices.Clone(bs)
	down[1].Up, down[2].Up = false, false
	someDown := mustService(t, ServiceConfig{Strategy: Maglev}, down)
	none := slices.Clone(bs)
	for i := range none {
		none[i].Up = false
	}
	allDown := mustService(t, ServiceConfig{Strategy: Maglev}, none)
	shared := mustService(t, ServiceConfig{Index: 1, Strategy: RoundRobin, TableShare: 10}, backends(2))
	counts := map[bool]int{}
	step := func(svc *Service, i uint32, flags uint8, now int64) {
		t.Helper()
		k := flowKey(i)
		if svc == shared {
			k.DstPort = 443
		}
		n := c.NewFlows()
		_, isNew := c.ScheduleFlow(svc, &k, c.Hash(&k), flags, now)
		if moved := c.NewFlows() != n; isNew != moved {
			t.Fatalf("service %d, flow %d at %d: isNew %v, NewFlows moved %v", svc.Index(), i, now, isNew, moved)
		}
		counts[isNew]++
	}
	for i := range uint32(200) { // fills the table, then evicts
		step(up, i, FlagSYN, int64(i))
	}
	for i := range uint32(200) { // the known ones on a down backend move; the rest are new
		step(someDown, i, FlagACK, sec)
	}
	for i := range uint32(20) {
		step(allDown, i, FlagACK, 2*sec)
	}
	for i := range uint32(100) { // past its share: forwarded without an entry
		step(shared, 1000+i, FlagSYN, 3*sec)
	}
	c.Maintain(3 * sec)
	st := c.Stats()
	if st.Evictions == 0 || st.Rescheduled == 0 || st.NoBackend == 0 || st.OverQuota == 0 {
		t.Fatalf("a path was not taken: %+v", st)
	}
	if counts[true] == 0 || counts[false] == 0 {
		t.Fatalf("isNew never varied: %v", counts)
	}
	checkTable(t, c)
}

// TestOldestPair: oldestPairAVX2 and maxAgeAVX2 (where the CPU has AVX2) and oldestPairGo
// agree with a plain scan on random ages, on ties (the lowest way), and across the tick
// counter's wrap.
func TestOldestPair(t *testing.T) {
	scan := func(s1, s2 *[ways]uint32, now uint32) (int, uint32) {
		best, age := 0, uint32(0)
		for i := range 2 * ways {
			s := s1
			if i >= ways {
				s = s2
			}
			if a := now - s[i%ways]; i == 0 || a > age {
				best, age = i, a
			}
		}
		return best, age
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 20000 {
		var s1, s2 [ways]uint32
		now := r.Uint32()
		spread := []uint32{1, 4, 1 << 12, 1 << 31}[n%4] // small spreads make ties
		for w := range ways {
			s1[w] = now - r.Uint32N(spread)
			s2[w] = now - r.Uint32N(spread)
		}
		wi, wa := scan(&s1, &s2, now)
		if _, a1 := scan(&s1, &s1, now); hasAVX2 && maxAgeAVX2(&s1, now) != a1 {
			t.Fatalf("maxAgeAVX2(%v, %d) = %d, want %d", s1, now, maxAgeAVX2(&s1, now), a1)
		}
		for name, f := range map[string]func(*[ways]uint32, *[ways]uint32, uint32) (int, uint32){"oldestPairAVX2": oldestPairAVX2, "oldestPairGo": oldestPairGo} {
			if name == "oldestPairAVX2" && !hasAVX2 {
				continue // the CPU has no AVX2 (or this is not amd64): victim uses oldestPairGo
			}
			if gi, ga := f(&s1, &s2, now); gi != wi || ga != wa {
				t.Fatalf("%s(%v, %v, %d) = way %d age %d, want way %d age %d", name, s1, s2, now, gi, ga, wi, wa)
			}
		}
	}
	t.Logf("AVX2: %v", hasAVX2)
}

// TestBucketFree: for every set of used ways, free returns the lowest unused way, or -1
// when all eight are used.
func TestBucketFree(t *testing.T) {
	for used := range 1 << ways {
		var b bucket
		for w := range ways {
			if used&(1<<w) != 0 {
				b.setTag(w, uint16(0x8001+2*w)) // tags are odd: never 0
			}
		}
		w := b.free()
		switch {
		case used == 1<<ways-1 && w != -1:
			t.Errorf("all ways used: free = %d, want -1", w)
		case used != 1<<ways-1 && w != bits.TrailingZeros(^uint(used)):
			t.Errorf("used %08b: free = %d, want the lowest free way %d", used, w, bits.TrailingZeros(^uint(used)))
		}
	}
}
