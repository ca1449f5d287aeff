package ha

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
)

// instancePair is two virtual routers (VRIDs 42 and 43, one VIP each) on one LB host.
type instancePair [2]*lbRouter

// startPair starts both routers on h with priority prio; with sync set they form a group.
func startInstances(t *testing.T, n *lab.Net, h *lab.Host, prio uint8, sync bool) instancePair {
	t.Helper()
	var g *SyncGroup
	var hook []func(*lbRouter, State, State)
	if sync {
		g = NewSyncGroup()
		hook = append(hook, func(lr *lbRouter, from, to State) { g.Changed(lr.r, from, to) })
	}
	var p instancePair
	for i, vrid := range []uint8{42, 43} {
		cfg := e2eConfig(n, false, prio, true)
		cfg.VirtualRouterID = vrid
		if i == 1 {
			cfg.VIPs = []netip.Addr{netip.MustParseAddr("198.18.0.101")}
		}
		p[i] = startLBRouter(t, h, cfg, hook...)
		if g != nil {
			g.Add(p[i].r)
		}
	}
	return p
}

// waitStates polls until the routers are in the wanted states.
func waitStates(t *testing.T, what string, want map[*Router]State, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		for r, st := range want {
			ok = ok && r.State() == st
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			got := map[uint8]string{}
			for r := range want {
				got[r.cfg.VirtualRouterID] = r.cfg.Interface + " " + r.State().String()
			}
			t.Fatalf("%s: states not reached within %v: %v", what, within, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestE2ETwoInstances runs two virtual routers on each of two LB hosts: a fault in one
// instance moves only that one; in a sync group the other follows it, and both come back
// together.
func TestE2ETwoInstances(t *testing.T) {
	for _, sync := range []bool{false, true} {
		name := "independent"
		if sync {
			name = "sync group"
		}
		t.Run(name, func(t *testing.T) { twoInstances(t, sync) })
	}
}

func twoInstances(t *testing.T, sync bool) {
	n := e2eNet(t, false)
	a := startInstances(t, n, n.LBs[0], 200, sync)
	b := startInstances(t, n, n.LBs[1], 100, sync)
	bound := 3*e2eInterval + e2eInterval + time.Second // master down + one interval + slack
	waitStates(t, "start", map[*Router]State{a[0].r: Master, a[1].r: Master, b[0].r: Backup, b[1].r: Backup}, 5*time.Second)

	// Instance 42 on lb0 faults (a tracked script failed): it resigns.
	a[0].r.SetFault(true)
	want := map[*Router]State{a[0].r: Fault, b[0].r: Master, a[1].r: Master, b[1].r: Backup}
	if sync {
		want[a[1].r], want[b[1].r] = Backup, Master
	}
	d := waitStates(t, "fault on lb0/42", want, bound)
	t.Logf("sync=%v: fault -> new masters after %v", sync, d)
	if !vipSettles(t, n.LBs[0], n.VIP, false) || !vipSettles(t, n.LBs[1], n.VIP, true) {
		t.Errorf("VIP of 42 not moved to lb1")
	}
	vip43 := netip.MustParseAddr("198.18.0.101")
	if !vipSettles(t, n.LBs[1], vip43, sync) || !vipSettles(t, n.LBs[0], vip43, !sync) {
		t.Errorf("VIP of 43 on lb0 %v, on lb1 %v (sync group %v)", hasVIP(t, n.LBs[0], vip43), hasVIP(t, n.LBs[1], vip43), sync)
	}
	// It stays so: the faulty instance does not come back, a held member does not preempt.
	time.Sleep(6 * e2eInterval)
	for r, st := range want {
		if r.State() != st {
			t.Errorf("vrid %d on %v: %v, want %v", r.cfg.VirtualRouterID, r.Status().Source, r.State(), st)
		}
	}
	// The fault clears: lb0 (higher priority, preempting) takes 42 back, and in a sync group
	// 43 with it.
	a[0].r.SetFault(false)
	d = waitStates(t, "fault cleared", map[*Router]State{a[0].r: Master, a[1].r: Master, b[0].r: Backup, b[1].r: Backup}, bound)
	t.Logf("sync=%v: fault cleared -> lb0 master of both after %v", sync, d)
}
