package sched_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// A control goroutine builds a snapshot and publishes it; a worker loads it once per batch
// and asks its Core for a backend per packet.
func Example() {
	svc, err := sched.NewService(sched.ServiceConfig{Index: 0, Strategy: sched.Maglev}, []sched.Backend{
		{ID: 1, Name: "198.18.0.11:80", Weight: 1, Up: true},
		{ID: 2, Name: "198.18.0.12:80", Weight: 1, Up: true},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	var current atomic.Pointer[sched.Service]
	current.Store(svc)

	core, err := sched.NewCore(sched.CoreConfig{ID: 0, Capacity: 1024})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The worker's batch loop.
	now := time.Now().UnixNano()
	s := current.Load()
	core.Prepare(s)
	k := sched.Key{SrcPort: 40000, DstPort: 80, Proto: 6}
	copy(k.Src[:], []byte{198, 18, 1, 1})
	copy(k.Dst[:], []byte{198, 19, 0, 10})
	first := core.Schedule(s, &k, sched.FlagSYN, now)
	again := core.Schedule(s, &k, sched.FlagACK, now)
	core.Maintain(now)

	fmt.Println(first == again, core.Stats().Inserts, core.Stats().Hits)
	// Output: true 1 1
}

// PopulateMaglev fills a table from given permutations: here the paper's Table 1.
func ExamplePopulateMaglev() {
	offsets := []uint64{3, 0, 3}
	skips := []uint64{4, 2, 1}
	fmt.Println(sched.PopulateMaglev(offsets, skips, []uint32{1, 1, 1}, 7))
	fmt.Println(sched.PopulateMaglev(offsets, skips, []uint32{1, 0, 1}, 7))
	// Output:
	// [1 0 1 0 2 2 0]
	// [0 0 0 0 2 2 2]
}

// A drained backend (weight 0, still up) keeps its flows; a backend that goes down loses
// them to the others on their next packet.
func ExampleCore_Schedule() {
	bs := []sched.Backend{
		{ID: 1, Name: "a", Weight: 1, Up: true},
		{ID: 2, Name: "b", Weight: 1, Up: true},
	}
	core, _ := sched.NewCore(sched.CoreConfig{Capacity: 64})
	rr, _ := sched.NewService(sched.ServiceConfig{Strategy: sched.RoundRobin}, bs)
	k := sched.Key{SrcPort: 1234, DstPort: 80, Proto: 6}
	p := core.Schedule(rr, &k, sched.FlagSYN, 0)
	name := rr.Backend(p).Name

	bs[p].Weight = 0 // drain
	drained, _ := sched.NewService(sched.ServiceConfig{Strategy: sched.RoundRobin}, bs)
	fmt.Println(drained.Backend(core.Schedule(drained, &k, sched.FlagACK, 1)).Name == name)

	bs[p].Up = false // down
	down, _ := sched.NewService(sched.ServiceConfig{Strategy: sched.RoundRobin}, bs)
	fmt.Println(down.Backend(core.Schedule(down, &k, sched.FlagACK, 2)).Name == name)
	// Output:
	// true
	// false
}

func ExampleParseStrategy() {
	for _, name := range []string{"maglev", "wrr", "least-load", "fastest"} {
		s, err := sched.ParseStrategy(name)
		fmt.Println(s, err)
	}
	// Output:
	// maglev <nil>
	// wrr <nil>
	// least-load <nil>
	// maglev unknown scheduler "fastest" (want maglev, rr, wrr, random, source-hash, least-conn, least-load or flow-hash)
}

// A Builder keeps its scratch buffers between rebuilds (control rebuilds a service on every
// health transition); the tables do not depend on the order of the backends.
func ExampleBuilder_Build() {
	var b sched.Builder
	cfg := sched.ServiceConfig{Index: 7, Strategy: sched.Maglev, TableSize: 251}
	one, _ := b.Build(cfg, []sched.Backend{
		{ID: 1, Name: "a", Weight: 1, Up: true},
		{ID: 2, Name: "b", Weight: 3, Up: true},
	})
	two, _ := b.Build(cfg, []sched.Backend{
		{ID: 2, Name: "b", Weight: 3, Up: true},
		{ID: 1, Name: "a", Weight: 1, Up: true},
	})
	same := true
	slots := map[string]int{}
	t1, t2 := one.Table(), two.Table()
	for i := range t1 {
		same = same && one.Backend(int(t1[i])).Name == two.Backend(int(t2[i])).Name
		slots[one.Backend(int(t1[i])).Name]++
	}
	fmt.Println(same, slots["a"], slots["b"])
	// Output: true 63 188
}

// A worker that has a batch of keys can hash them and pull their connection-table lines into
// the cache in one pass, then schedule each packet with its precomputed hash.
func ExampleCore_PrefetchBatch() {
	svc, _ := sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev}, []sched.Backend{
		{ID: 1, Name: "198.18.0.11:80", Weight: 1, Up: true},
		{ID: 2, Name: "198.18.0.12:80", Weight: 1, Up: true},
	})
	core, _ := sched.NewCore(sched.CoreConfig{Capacity: 1024})
	keys := make([]sched.Key, 64)
	for i := range keys {
		keys[i] = sched.Key{SrcPort: uint16(10000 + i), DstPort: 80, Proto: 6}
		copy(keys[i].Src[:], []byte{198, 18, 1, 1})
	}
	var hs [64]uint64
	now := int64(0)
	for range 2 { // two batches of the same 64 flows
		core.PrefetchBatch(keys, hs[:])
		for i := range keys {
			core.ScheduleHashed(svc, &keys[i], hs[i], sched.FlagACK, now)
		}
		core.Maintain(now)
	}
	st := core.Stats()
	fmt.Println(st.Inserts, st.Hits, hs[0] == core.Hash(&keys[0]))
	// Output: 64 64 true
}

// Every LB host of a cluster configures the same hash key (config: hash_key), so a new flow
// gets the same backend whichever host it reaches; another key spreads flows differently,
// and nobody without the key can tell which backend a flow gets.
func ExampleParseHashKey() {
	key, err := sched.ParseHashKey("5f0c2a9d8e7b6a5f4e3d2c1b0a998877")
	if err != nil {
		fmt.Println(err)
		return
	}
	bs := []sched.Backend{
		{ID: 1, Name: "198.18.0.11:80", Weight: 1, Up: true},
		{ID: 2, Name: "198.18.0.12:80", Weight: 1, Up: true},
		{ID: 3, Name: "198.18.0.13:80", Weight: 1, Up: true},
	}
	hostA, _ := sched.NewService(sched.ServiceConfig{HashKey: key}, bs)
	hostB, _ := sched.NewService(sched.ServiceConfig{HashKey: key}, bs)
	k := sched.Key{SrcPort: 40000, DstPort: 80, Proto: 6}
	copy(k.Src[:], []byte{198, 18, 1, 1})
	copy(k.Dst[:], []byte{198, 19, 0, 10})
	fmt.Println(hostA.Lookup(&k) == hostB.Lookup(&k), hostA.HashKey().IsDefault())
	_, err = sched.ParseHashKey("not-a-key")
	fmt.Println(err)
	// Output:
	// true false
	// hash key must be 32 hex digits (128 bits): 9 characters
}

// Persistence: the workers' cores share one PersistTable, so the connections of one client
// (new source ports, on any core) reach one backend while round-robin would spread them;
// only that backend going down moves the client.
func ExamplePersistTable() {
	table, err := sched.NewPersistTable(4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	cores := make([]*sched.Core, 2)
	for i := range cores {
		if cores[i], err = sched.NewCore(sched.CoreConfig{ID: i, Capacity: 1024, Persist: table}); err != nil {
			fmt.Println(err)
			return
		}
	}
	backends := []sched.Backend{{ID: 1, Name: "a", Weight: 1, Up: true}, {ID: 2, Name: "b", Weight: 1, Up: true}}
	cfg := sched.ServiceConfig{Strategy: sched.RoundRobin, Persistence: sched.Persistence{Timeout: 5 * time.Minute}}
	svc, _ := sched.NewService(cfg, backends)
	now := time.Now().UnixNano()
	conn := func(s *sched.Service, port uint16) string {
		k := sched.Key{SrcPort: port, DstPort: 80, Proto: 6}
		copy(k.Src[:], []byte{198, 18, 1, 1})
		return s.Backend(cores[port%2].Schedule(s, &k, sched.FlagSYN, now)).Name
	}
	fmt.Println(conn(svc, 1000), conn(svc, 1001), conn(svc, 1002), conn(svc, 1003))
	backends[0].Up = false
	down, _ := sched.NewService(cfg, backends)
	fmt.Println(conn(down, 1004), conn(down, 1005))
	// Output:
	// a a a a
	// b b
}
