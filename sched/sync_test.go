package sched

import (
	"testing"
	"time"
)

// The miss hook decides a new flow's backend (except for a SYN, and unless that backend
// is down), and the core notes exactly the changes peers should hear about.
func TestCoreSync(t *testing.T) {
	bs := backends(3)
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, bs)
	c := mustCore(t, CoreConfig{Capacity: 1024})
	asked := 0
	c.SetSync(func(_ *Service, k Key) int { asked++; return 2 }, true, 10*time.Second)

	k := flowKey(1)
	if p := c.Schedule(svc, &k, FlagSYN, 0); p == 2 || asked != 0 {
		t.Fatalf("a SYN went to the peer's backend (%d) or asked the hook (%d times)", p, asked)
	}
	if _, ok := c.SyncChange(); ok {
		t.Fatal("a half-open flow was noted")
	}
	if p := c.Schedule(svc, &k, FlagACK, sec); p == 2 {
		t.Fatal("a known flow asked the peer")
	}
	if st, ok := c.SyncChange(); !ok || st != ConnEstablished {
		t.Fatalf("SynRecv -> established: %v %v", st, ok)
	}
	if _, ok := c.SyncChange(); ok {
		t.Fatal("SyncChange did not clear the note")
	}
	c.Schedule(svc, &k, FlagACK, 2*sec)
	if _, ok := c.SyncChange(); ok {
		t.Fatal("an unchanged flow within the refresh period was noted")
	}
	c.Schedule(svc, &k, FlagACK, 14*sec)
	if st, ok := c.SyncChange(); !ok || st != ConnEstablished {
		t.Fatal("no refresh after the period")
	}
	c.Schedule(svc, &k, FlagFIN|FlagACK, 15*sec)
	if st, ok := c.SyncChange(); !ok || st != ConnFinWait {
		t.Fatalf("FIN: %v %v", st, ok)
	}

	m := flowKey(2) // mid-flow, unknown here: the peer's backend
	if p := c.Schedule(svc, &m, FlagACK, 20*sec); p != 2 || asked != 1 {
		t.Fatalf("mid-flow packet: backend %d, hook asked %d times; want 2, 1", p, asked)
	}
	if st, ok := c.SyncChange(); !ok || st != ConnEstablished {
		t.Fatal("an adopted flow was not noted")
	}
	if p := c.Schedule(svc, &m, FlagACK, 21*sec); p != 2 || asked != 1 {
		t.Fatalf("the adopted flow: backend %d, asked %d", p, asked)
	}

	bs[2].Up = false
	down := mustService(t, ServiceConfig{Strategy: RoundRobin}, bs)
	u := flowKey(3)
	if p := c.Schedule(down, &u, FlagACK, 22*sec); p == 2 || p < 0 {
		t.Fatalf("the peer's backend is down: got %d", p)
	}
}

// Without SetSync nothing is noted and nobody is asked.
func TestCoreNoSync(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 1024})
	k := flowKey(1)
	c.Schedule(svc, &k, FlagACK, 0)
	if _, ok := c.SyncChange(); ok {
		t.Fatal("a change noted without SetSync")
	}
}

// TestCoreSyncCarriesPersistence: on the host that took over, a synced connection of a
// persistent service sets its client's persistence, so the client's new connections
// (SYNs, which never ask the peers) follow it instead of the strategy's spread.
func TestCoreSyncCarriesPersistence(t *testing.T) {
	svc := persistSvc(t, RoundRobin, Persistence{Timeout: time.Minute}, backends(5))
	c := mustCore(t, CoreConfig{Capacity: 1024})
	synced := flowKey(1)
	c.SetSync(func(_ *Service, k Key) int {
		if k == synced {
			return 3
		}
		return -1
	}, false, 10*time.Second)
	if p := c.Schedule(svc, &synced, FlagACK, sec); p != 3 {
		t.Fatalf("the synced connection: backend %d, want the peer's 3", p)
	}
	for i := uint32(2); i < 12; i++ {
		k := flowKey(i) // the same client, new connections
		if p := c.Schedule(svc, &k, FlagSYN, 2*sec); p != 3 {
			t.Fatalf("new connection %d of the client: backend %d, want 3 (its synced connection's)", i, p)
		}
	}
	other := flowKey(60000) // another client: spread by round robin as usual
	seen := map[int]bool{}
	for i := uint32(0); i < 10; i++ {
		k := other
		k.SrcPort += uint16(i)
		seen[c.Schedule(svc, &k, FlagSYN, 2*sec)] = true
		k.Src[3]++ // a new client each time
		other = k
	}
	if len(seen) < 2 {
		t.Errorf("other clients all on one backend: %v", seen)
	}
}

// TestCoreSyncRemovals: the removal hook hears of exactly the entries whose peers' copy
// would outlive them: live connections evicted, a closed connection's reused tuple, a
// flow no backend can take; not idle expiry, half-open or closing evictions.
func TestCoreSyncRemovals(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(3))
	c := mustCore(t, CoreConfig{Capacity: 64, Timeouts: Timeouts{TCPEstablished: 10 * time.Second}})
	gone := map[Key]ConnState{}
	c.SetSync(nil, true, time.Minute)
	c.SetSyncRemovals(func(k *Key, st ConnState) { gone[*k] = st })
	evictions := func(now int64) uint64 { c.Maintain(now); return c.Stats().Evictions }

	// Half-open connections fill the table and are evicted: nothing to tell.
	for i := range uint32(200) {
		k := flowKey(i)
		c.Schedule(svc, &k, FlagSYN, sec)
	}
	if ev := evictions(sec); ev == 0 || len(gone) != 0 {
		t.Fatalf("half-open evictions: %d evicted, %d removals reported", ev, len(gone))
	}
	// Established connections evict them, then each other: every established one evicted
	// is reported, with its state.
	before := evictions(sec)
	live := map[Key]bool{}
	for i := range uint32(400) {
		k := flowKey(1000 + i)
		c.Schedule(svc, &k, FlagACK, 2*sec)
		live[k] = true
	}
	ev := evictions(2*sec) - before
	n := 0
	for k, st := range gone {
		if !live[k] || st != ConnEstablished {
			t.Fatalf("reported %v (%v), not an established flow of this run", k, st)
		}
		n++
	}
	// The half-open entries went first (the oldest), then established ones.
	if n != 400-c.Capacity() || ev != 400 {
		t.Fatalf("%d removals for %d evictions; want %d of 400", n, ev, 400-c.Capacity())
	}
	// Closing connections evicted: their peers' copy runs out by itself.
	for k := range live {
		if _, evicted := gone[k]; !evicted {
			c.Schedule(svc, &k, FlagFIN|FlagACK, 3*sec) // the ones still in the table close
		}
	}
	if c.Len() != c.Capacity() || len(gone) != 400-c.Capacity() {
		t.Fatalf("closing the table's connections: %d entries, %d removals", c.Len(), len(gone))
	}
	clear(gone)
	for i := range uint32(200) {
		k := flowKey(5000 + i)
		c.Schedule(svc, &k, FlagSYN, 3*sec)
	}
	if len(gone) != 0 {
		t.Fatalf("closing or half-open evictions reported: %d", len(gone))
	}
	// Idle expiry (Maintain's sweep, a lookup): not reported.
	for range 64 {
		c.Maintain(400 * sec)
	}
	if c.Len() != 0 || len(gone) != 0 {
		t.Fatalf("after the idle timeouts: %d entries, %d removals reported", c.Len(), len(gone))
	}
	// A closed connection's tuple reused by a new connection: reported, in its last state.
	k := flowKey(9000)
	c.Schedule(svc, &k, FlagACK, 500*sec)
	c.Schedule(svc, &k, FlagRST, 501*sec)
	c.Schedule(svc, &k, FlagSYN, 502*sec)
	if st, ok := gone[k]; !ok || st != ConnClose || len(gone) != 1 {
		t.Fatalf("reused tuple: %v %v (%d reported)", st, ok, len(gone))
	}
	// A flow that no backend can take any more: dropped and reported.
	clear(gone)
	c.Schedule(svc, &k, FlagACK, 503*sec)
	bs := backends(3)
	for i := range bs {
		bs[i].Up = false
	}
	down := mustService(t, ServiceConfig{Strategy: RoundRobin}, bs)
	if p := c.Schedule(down, &k, FlagACK, 504*sec); p >= 0 || gone[k] != ConnEstablished {
		t.Fatalf("no backend: %d, reported %v", p, gone)
	}
}

// TestCoreSyncTemplates: a persistent client's template is noted when it is made, when it
// moves, and when refreshed past min(refresh, timeout/4), not for every connection; on a
// peer, a client it does not know takes the backend the template hook names (when up),
// for every later connection too.
func TestCoreSyncTemplates(t *testing.T) {
	bs := backends(5)
	svc := persistSvc(t, RoundRobin, Persistence{Timeout: 100 * time.Second}, bs)
	c := mustCore(t, CoreConfig{Capacity: 1024})
	c.SetSync(nil, true, time.Minute)
	c.SetSyncTemplates(nil, true)
	client := func(i uint32, conn uint32) Key { return flowKey(60000*i + conn) }
	k := client(1, 0)
	first := c.Schedule(svc, &k, FlagSYN, sec)
	if !c.SyncTemplate() {
		t.Fatal("a new template was not noted")
	}
	if c.SyncTemplate() {
		t.Fatal("SyncTemplate did not clear the note")
	}
	for i := uint32(1); i < 10; i++ {
		k := client(1, i)
		if p := c.Schedule(svc, &k, FlagSYN, sec+int64(i)*sec); p != first || c.SyncTemplate() {
			t.Fatalf("connection %d: backend %d (want %d), noted %v", i, p, first, p == first)
		}
	}
	// timeout/4 = 25 s < refresh: the template is sent again 25 s after it was sent.
	k = client(1, 20)
	c.Schedule(svc, &k, FlagSYN, 27*sec)
	if !c.SyncTemplate() {
		t.Fatal("a template refreshed 26 s after it was sent was not noted")
	}
	// A long-lived connection refreshes its client's template once a second; the peers
	// hear of it every 25 s, not every second.
	notes := 0
	for s := int64(28); s < 128; s++ {
		c.Schedule(svc, &k, FlagACK, s*sec)
		c.SyncChange()
		if c.SyncTemplate() {
			notes++
		}
	}
	if notes < 3 || notes > 5 {
		t.Fatalf("100 s of a live connection: %d template notes, want about 4", notes)
	}
	// Another client: a template of its own.
	o := client(2, 0)
	c.Schedule(svc, &o, FlagSYN, 130*sec)
	if !c.SyncTemplate() {
		t.Fatal("another client's template was not noted")
	}

	// The peer: clients it does not know follow the templates' backends.
	peer := mustCore(t, CoreConfig{Capacity: 1024})
	asked := 0
	peer.SetSyncTemplates(func(_ *Service, k Key) int {
		asked++
		if k.Src == client(1, 0).Src {
			return 3
		}
		if k.Src == client(3, 0).Src {
			return 4
		}
		return -1
	}, false)
	for i := range uint32(8) {
		k := client(1, 100+i)
		if p := peer.Schedule(svc, &k, FlagSYN, 200*sec); p != 3 {
			t.Fatalf("the templated client's connection %d: backend %d, want 3", i, p)
		}
	}
	if asked != 1 {
		t.Fatalf("the hook was asked %d times; want once (then the client is remembered here)", asked)
	}
	if peer.SyncTemplate() {
		t.Fatal("a core that does not send noted a template")
	}
	bs[4].Up = false
	down := persistSvc(t, RoundRobin, Persistence{Timeout: 100 * time.Second}, bs)
	k3 := client(3, 0)
	if p := peer.Schedule(down, &k3, FlagSYN, 201*sec); p == 4 || p < 0 {
		t.Fatalf("the template's backend is down: got %d", p)
	}
}
