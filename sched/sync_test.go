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
