package sched

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// clientKey returns a TCP key of client 198.18.a.b with source port port.
func clientKey(a, b byte, port uint16) Key {
	k := Key{Proto: protoTCP, DstPort: 80, SrcPort: port}
	k.Src[0], k.Src[1], k.Src[2], k.Src[3] = 198, 18, a, b
	copy(k.Dst[:], []byte{198, 19, 0, 10})
	return k
}

func persistSvc(t testing.TB, s Strategy, p Persistence, bs []Backend) *Service {
	t.Helper()
	return mustService(t, ServiceConfig{Strategy: s, Persistence: p}, bs)
}

// TestPersistenceAcrossCores: round-robin would spread a client's connections; with
// persistence, every connection of the client reaches one backend, on two cores sharing a
// table, after a backend is added, while its backend is drained; only its backend going
// down moves it (on both cores alike).
func TestPersistenceAcrossCores(t *testing.T) {
	pt, err := NewPersistTable(1024)
	if err != nil {
		t.Fatal(err)
	}
	cores := []*Core{mustCore(t, CoreConfig{ID: 0, Capacity: 1024, Persist: pt}), mustCore(t, CoreConfig{ID: 1, Capacity: 1024, Persist: pt})}
	p := Persistence{Timeout: 300 * time.Second}
	svc := persistSvc(t, RoundRobin, p, backends(3))
	now := int64(1000 * sec)
	conns := func(svc *Service, client byte, first uint16, n int) map[uint32]int {
		got := map[uint32]int{}
		for i := range n {
			k := clientKey(0, client, first+uint16(i))
			pos := cores[i%2].Schedule(svc, &k, FlagSYN, now)
			got[svc.Backend(pos).ID]++
		}
		return got
	}
	home := map[byte]uint32{}
	for client := byte(1); client <= 6; client++ {
		got := conns(svc, client, 1000, 20)
		if len(got) != 1 {
			t.Fatalf("client %d: 20 connections on %v, want one backend", client, got)
		}
		for id := range got {
			home[client] = id
		}
	}
	spread := map[uint32]bool{}
	for _, id := range home {
		spread[id] = true
	}
	if len(spread) < 2 {
		t.Errorf("six clients all on one backend %v: the strategy's pick should spread clients", home)
	}
	// A backend added: every client keeps its backend.
	four := persistSvc(t, RoundRobin, p, backends(4))
	for client, id := range home {
		if got := conns(four, client, 2000, 10); len(got) != 1 || got[id] != 10 {
			t.Errorf("client %d after a backend was added: %v, want all on %d", client, got, id)
		}
	}
	// Drained (weight 0): its clients stay.
	bs := backends(4)
	bs[home[1]-1].Weight = 0
	drained := persistSvc(t, RoundRobin, p, bs)
	if got := conns(drained, 1, 3000, 10); len(got) != 1 || got[home[1]] != 10 {
		t.Errorf("client 1 with its backend drained: %v, want all on %d", got, home[1])
	}
	// Down: moved, and every later connection follows the move on both cores.
	bs = backends(4)
	bs[home[1]-1].Up = false
	down := persistSvc(t, RoundRobin, p, bs)
	got := conns(down, 1, 4000, 20)
	if len(got) != 1 || got[home[1]] != 0 {
		t.Errorf("client 1 with its backend down: %v, want one other backend than %d", got, home[1])
	}
	// An old connection of client 1 on the dead backend is rescheduled to the new home.
	k := clientKey(0, 1, 1000)
	for id := range got {
		if pos := cores[0].Schedule(down, &k, FlagACK, now); down.Backend(pos).ID != id {
			t.Errorf("an old connection of client 1 rescheduled to %d, want its new home %d", down.Backend(pos).ID, id)
		}
	}
	if s := cores[0].Stats(); s.Persisted == 0 {
		cores[0].Maintain(now)
		if cores[0].Stats().Persisted == 0 {
			t.Error("Stats.Persisted stayed 0")
		}
	}
}

// TestPersistenceTimeoutAndPrefix: a client forgotten after the timeout gets the strategy's
// pick; clients of one /24 share a backend with prefix 24; IPv6 clients of one /64 do by
// default.
func TestPersistenceTimeoutAndPrefix(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 1024})
	svc := persistSvc(t, RoundRobin, Persistence{Timeout: 10 * time.Second}, backends(5))
	now := int64(0)
	k := clientKey(0, 1, 1)
	first := c.Schedule(svc, &k, FlagSYN, now)
	moved := false
	for i := range 5 {
		now += 11 * sec // beyond the timeout: forgotten, round-robin moves on
		k := clientKey(0, 1, uint16(100+i))
		if c.Schedule(svc, &k, FlagSYN, now) != first {
			moved = true
		}
	}
	if !moved {
		t.Error("a client idle beyond the timeout never got another backend")
	}
	// Within the timeout (5 s apart, 100 times): always the same.
	k = clientKey(0, 2, 1)
	home := c.Schedule(svc, &k, FlagSYN, now)
	for i := range 100 {
		now += 5 * sec
		k := clientKey(0, 2, uint16(10+i))
		if got := c.Schedule(svc, &k, FlagSYN, now); got != home {
			t.Fatalf("connection %d 5 s after the previous: backend %d, want %d", i, got, home)
		}
	}
	v4 := persistSvc(t, RoundRobin, Persistence{Timeout: time.Minute, Prefix4: 24}, backends(5))
	k = clientKey(7, 1, 1)
	home = c.Schedule(v4, &k, FlagSYN, now)
	for b := byte(2); b < 50; b++ {
		k := clientKey(7, b, 1)
		if got := c.Schedule(v4, &k, FlagSYN, now); got != home {
			t.Fatalf("client 198.18.7.%d: backend %d, want its /24's %d", b, got, home)
		}
	}
	six := mustService(t, ServiceConfig{Index: 3, Strategy: RoundRobin, Persistence: Persistence{Timeout: time.Minute}}, backends(5))
	key6 := func(host byte, subnet byte) Key {
		k := Key{Proto: protoTCP, DstPort: 80, SrcPort: 5000 + uint16(host), V6: true}
		k.Src = [16]byte{0x20, 0x01, 0, 2, 0, 0, 0, subnet, 0, 0, 0, 0, 0, 0, 0, host}
		return k
	}
	k = key6(1, 1)
	home = c.Schedule(six, &k, FlagSYN, now)
	others := map[int]bool{}
	for h := byte(2); h < 20; h++ {
		k := key6(h, 1)
		if got := c.Schedule(six, &k, FlagSYN, now); got != home {
			t.Fatalf("IPv6 client ::%d of the same /64: backend %d, want %d", h, got, home)
		}
		k = key6(h, h) // another /64 each
		others[c.Schedule(six, &k, FlagSYN, now)] = true
	}
	if len(others) < 2 {
		t.Errorf("clients of different /64s all on %v", others)
	}
}

// TestPersistTableEvictsOldest: a full bucket replaces the client seen longest ago.
func TestPersistTableEvictsOldest(t *testing.T) {
	pt, _ := NewPersistTable(4) // one bucket
	for i := range uint64(4) {
		pt.store(i+1, uint32(10+i), uint32(100+i), false)
	}
	pt.store(1, 10, 200, true) // client 1 refreshed: client 2 is now the oldest
	pt.store(99, 7, 201, false)
	if _, _, ok := pt.lookup(2, 201, 1000); ok {
		t.Error("the oldest client was not the one replaced")
	}
	for _, k := range []uint64{1, 3, 4, 99} {
		if _, _, ok := pt.lookup(k, 201, 1000); !ok {
			t.Errorf("client %d lost", k)
		}
	}
	if id, _, _ := pt.lookup(99, 201, 1000); id != 7 {
		t.Errorf("client 99 -> %d, want 7", id)
	}
	pt.store(3, 55, 202, true) // a refresh that names another backend changes nothing
	if id, _, _ := pt.lookup(3, 202, 1000); id != 12 {
		t.Errorf("refresh with another backend rewrote the slot: %d", id)
	}
	if pt.Used() != 4 || pt.Capacity() != 4 {
		t.Errorf("used %d capacity %d, want 4 and 4", pt.Used(), pt.Capacity())
	}
	if _, err := NewPersistTable(-1); !errors.Is(err, ErrBadCore) {
		t.Errorf("size -1: %v", err)
	}
	if _, err := NewService(ServiceConfig{Persistence: Persistence{Timeout: time.Millisecond}}, backends(1)); !errors.Is(err, ErrBadService) {
		t.Errorf("timeout 1ms: %v", err)
	}
	if _, err := NewService(ServiceConfig{Persistence: Persistence{Timeout: time.Minute, Prefix4: 33}}, backends(1)); !errors.Is(err, ErrBadService) {
		t.Errorf("prefix 33: %v", err)
	}
}

// TestPersistTableConcurrent: cores writing and reading one bucket at once never see a
// client's value under another client's key (run with -race too).
func TestPersistTableConcurrent(t *testing.T) {
	pt, _ := NewPersistTable(4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				key := uint64(g*8 + i%8 + 1)
				pt.store(key, uint32(key*1000), uint32(i), false)
				if id, _, ok := pt.lookup(key^1, uint32(i), 1<<30); ok && id != uint32((key^1)*1000) {
					t.Errorf("client %d read backend %d", key^1, id)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestOnePacket: every packet of a one-packet service is scheduled (round-robin moves on
// per packet of the same flow) and the table stays empty.
func TestOnePacket(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 1024})
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin, OnePacket: true}, backends(3))
	k := Key{Proto: protoUDP, SrcPort: 5353, DstPort: 53}
	seen := map[int]int{}
	for range 30 {
		seen[c.Schedule(svc, &k, 0, 1)]++
	}
	if len(seen) != 3 || seen[0] != 10 {
		t.Errorf("30 datagrams of one flow: %v, want 10 on each of 3", seen)
	}
	c.Maintain(1)
	if s := c.Stats(); s.Entries != 0 || s.OnePacket != 30 || s.Inserts != 0 {
		t.Errorf("stats %+v: want no entries, 30 one-packet", s)
	}
	// With persistence, one-packet datagrams of a client stay on its backend.
	ps := mustService(t, ServiceConfig{Index: 1, Strategy: RoundRobin, OnePacket: true, Persistence: Persistence{Timeout: time.Minute}}, backends(3))
	first := c.Schedule(ps, &k, 0, 1)
	for range 10 {
		if c.Schedule(ps, &k, 0, 2) != first {
			t.Fatal("one-packet with persistence moved a client")
		}
	}
}

// TestPersistenceAllocs: persistent and one-packet scheduling allocate nothing once the
// core has seen the snapshot (the table is shared and made beforehand).
func TestPersistenceAllocs(t *testing.T) {
	pt, _ := NewPersistTable(1 << 12)
	c := mustCore(t, CoreConfig{Capacity: 1 << 10, Persist: pt})
	for _, s := range []Strategy{Maglev, RoundRobin, LeastConn} {
		svc := mustService(t, ServiceConfig{Strategy: s, Persistence: Persistence{Timeout: time.Minute, Prefix4: 24}}, backends(4))
		one := mustService(t, ServiceConfig{Index: 1, Strategy: s, OnePacket: true, Persistence: Persistence{Timeout: time.Minute}}, backends(4))
		c.Prepare(svc)
		c.Prepare(one)
		i := uint32(0)
		if n := testing.AllocsPerRun(5000, func() {
			i++
			k := flowKey(i * 7919)
			c.Schedule(svc, &k, FlagSYN, int64(i)*sec/4) // new flows, and hits that refresh
			c.Schedule(svc, &k, FlagACK, int64(i)*sec/4+sec)
			c.Schedule(one, &k, 0, int64(i))
		}); n != 0 {
			t.Errorf("%v: %v allocs", s, n)
		}
	}
}

// BenchmarkPersist compares a persistent service with a plain one: "new" is a new flow
// (the client known: persistence adds its lookup and refresh to a connection-table miss),
// "hit" a packet of a known flow (persistence adds a comparison; the refresh, at most once a
// second per flow, does not happen within the run's clock).
func BenchmarkPersist(b *testing.B) {
	for _, path := range []string{"new", "hit"} {
		for _, name := range []string{"plain", "persistent"} {
			b.Run(path+"/"+name, func(b *testing.B) {
				pt, _ := NewPersistTable(1 << 16)
				c := mustCore(b, CoreConfig{Capacity: 1 << 16, Persist: pt})
				cfg := ServiceConfig{Strategy: RoundRobin}
				if name == "persistent" {
					cfg.Persistence = Persistence{Timeout: time.Hour}
				}
				svc := mustService(b, cfg, backends(8))
				c.Prepare(svc)
				keys := make([]Key, 4096) // 4096 clients
				for i := range keys {
					keys[i] = clientKey(byte(i>>8), byte(i), 1000)
					c.Schedule(svc, &keys[i], FlagSYN, 0)
				}
				b.ReportAllocs()
				i := uint32(0)
				for b.Loop() {
					i++
					k := &keys[i&4095]
					if path == "new" {
						k.SrcPort++ // a new connection of a known client
					}
					c.Schedule(svc, k, FlagACK, int64(i))
				}
			})
		}
	}
}
