package dataplane

import (
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

// TestActiveFlows: the active flows a worker publishes are its connection table's entries
// per backend, summed by service name and backend ID; they are republished after activeEvery.
func TestActiveFlows(t *testing.T) {
	s := captureSnapshot(t)
	e := newEngine(t)
	d := &Dataplane{workers: []*worker{{engine: e}}}
	d.snap.Store(s)
	var pkts [][]byte
	for i := range 40 {
		pkts = append(pkts, craft(t, pktOpts{src: client4, dst: vip4, sport: uint16(5000 + i), dport: 80, flags: encap.TCPFlagSYN}))
	}
	now := activeEvery + 1
	e.Process(s, capFrames(t, pkts...), now)
	e.fl.publish()
	got := d.ActiveFlows()
	var sum uint64
	for id, n := range got["web"] {
		if id < 1 || id > 3 {
			t.Errorf("backend ID %d", id)
		}
		sum += n
	}
	if sum != 40 || len(got["web"]) != 3 || got["tun"][1] != 0 {
		t.Fatalf("active flows %v, want 40 over web's 3 backends", got)
	}
	e.Process(s, capFrames(t, craft(t, pktOpts{src: client4, dst: vip4, sport: 6000, dport: 80, flags: encap.TCPFlagSYN})), now+1)
	e.fl.publish()
	if n := d.ActiveFlows()["web"]; n[1]+n[2]+n[3] != 40 {
		t.Errorf("republished before activeEvery: %v", n)
	}
	e.Process(s, nil, now+1+activeEvery)
	e.fl.publish()
	if n := d.ActiveFlows()["web"]; n[1]+n[2]+n[3] != 41 {
		t.Errorf("after activeEvery: %v, want 41 in all", n)
	}
}
