package scaleout

import (
	"context"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
)

const (
	longConns  = 48 // long-lived connections to the IPv4 VIP, each from its own source port
	longConns6 = 16 // and to the IPv6 VIP
	loops      = 2  // request loops (a new connection per request) to the IPv4 VIP, 1 to the IPv6 one
	settle     = 1500 * time.Millisecond
)

// rxAll reads every running LB's received-frame counter.
func (c *cluster) rxAll() []int64 {
	out := make([]int64, len(c.tn.LBs))
	for i := range out {
		out[i] = -1
		if i < len(c.lbs) && c.lbs[i] != nil && c.lbs[i].cmd.ProcessState == nil {
			out[i] = c.rx(c.lbs[i])
		}
	}
	return out
}

func delta(a, b []int64) []int64 {
	out := make([]int64, len(a))
	for i := range a {
		if a[i] < 0 || b[i] < 0 {
			out[i] = -1
			continue
		}
		out[i] = b[i] - a[i]
	}
	return out
}

// TestScaleOut (issue 8): three `xlb run` hosts announce the VIP by BGP to a BIRD router
// that spreads the client's flows over them by ECMP (L4 hash). Long-lived TCP connections
// and a request loop run while a host joins, one is drained (xlb ctl drain-host), one is
// killed outright (SIGKILL: the router notices after the 3s hold time), and, with the
// traffic spread again, a backend dies and every host's own prober takes it out. Since
// every host builds the same Maglev table, a flow moved to another host reaches the same
// backend: the connections survive. The figures are logged ("RESULT").
func TestScaleOut(t *testing.T) {
	c := newCluster(t, 3, 3)
	ctx := context.Background()
	vip := net.JoinHostPort(c.tn.VIP.String(), "80")

	lb0, lb1 := c.startLB(0), c.startLB(1)
	c.waitUp(lb0, 3)
	c.waitUp(lb1, 3)
	c.waitGateways("lb0 and lb1 announce the VIPs", 0, 1)
	// converge waits for the router's two ECMP routes and returns how long after start
	// each was right.
	converge := func(what string, start time.Time, lbs ...int) (time.Duration, time.Duration) {
		t.Helper()
		pre := time.Since(start)
		v4, v6 := c.waitGateways(what, lbs...)
		return (pre + v4).Round(time.Millisecond), (pre + v6).Round(time.Millisecond)
	}

	tr, err := startTraffic(ctx, c.client, vip, longConns, loops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Stop)
	tr6, err := startTraffic(ctx, c.client, net.JoinHostPort(c.tn.VIP6.String(), "80"), longConns6, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr6.Stop)
	check := func(phase string, from time.Time) {
		t.Helper()
		for _, x := range []struct {
			name string
			tr   *traffic
		}{{"IPv4", tr}, {"IPv6", tr6}} {
			ok, failed := x.tr.requests(from, time.Now())
			n, dead := x.tr.alive()
			t.Logf("RESULT %s %s: long connections alive %d/%d, request loop %d ok %d failed", phase, x.name, n, len(x.tr.conns), ok, failed)
			if n != len(x.tr.conns) {
				t.Errorf("%s %s: %d long connections lost:\n%s", phase, x.name, len(x.tr.conns)-n, strings.Join(dead, "\n"))
			}
		}
	}

	// 1. Spread over two hosts.
	start := time.Now()
	rx := c.rxAll()
	time.Sleep(settle)
	d := delta(rx, c.rxAll())
	t.Logf("RESULT spread over lb0, lb1: rx frames per LB %v; long connections per backend %v", d[:2], tr.byBackend())
	if d[0] <= 0 || d[1] <= 0 {
		t.Errorf("traffic not spread over both LBs: rx %v", d)
	}
	check("spread", start)

	// 2. A third host joins.
	start = time.Now()
	lb2 := c.startLB(2)
	join, join6 := converge("lb2 joins", start, 0, 1, 2)
	rx = c.rxAll()
	time.Sleep(settle)
	d = delta(rx, c.rxAll())
	t.Logf("RESULT join: routes via lb2 %v (IPv6 %v) after its start; rx frames per LB %v", join, join6, d)
	if d[0] <= 0 || d[1] <= 0 || d[2] <= 0 {
		t.Errorf("after the join the traffic is not spread over three LBs: rx %v", d)
	}
	check("join", start)

	// 3. lb0 is drained: its routes are withdrawn, the router moves its flows to lb1 and
	// lb2 (same Maglev table: same backends), lb0 keeps forwarding what still reaches it.
	start = time.Now()
	var st control.BGPStatus
	must(t, c.ctl(lb0, &st, "drain-host"))
	drain, drain6 := converge("lb0 drained", start, 1, 2)
	if !st.Drained || len(st.Announced) != 0 {
		t.Errorf("drain-host answered %+v", st)
	}
	time.Sleep(100 * time.Millisecond)
	rx = c.rxAll()
	time.Sleep(settle)
	d = delta(rx, c.rxAll())
	t.Logf("RESULT drain-host lb0: router converged %v (IPv6 %v) after the command; rx frames per LB afterwards %v", drain, drain6, d)
	if d[0] < 0 || d[0]*20 > d[1]+d[2] || d[1] <= 0 || d[2] <= 0 {
		t.Errorf("after drain-host lb0 still receives: rx %v", d)
	}
	check("drain", start)

	// 4. lb1 dies outright (its host goes silent and its process is SIGKILLed): no
	// withdraw, not even a TCP FIN; the router drops its routes when the hold time runs
	// out, and the flows it carried move to lb2.
	start = time.Now()
	c.hang(1, true)
	must(t, lb1.cmd.Process.Signal(syscall.SIGKILL))
	<-lb1.exited
	kill, kill6 := converge("lb1 killed", start, 2)
	converged := time.Now()
	if !tr.settled(converged, 12*time.Second) || !tr6.settled(converged, 12*time.Second) {
		t.Errorf("long connections still stalled 12s after the router converged")
	}
	ok, failed := tr.requests(start, converged)
	t.Logf("RESULT kill lb1: router converged %v (IPv6 %v) after SIGKILL (hold time %ds); IPv4 request loop during detection %d ok %d failed",
		kill, kill6, holdTime, ok, failed)
	check("kill", start)

	// 5. The traffic spreads again (lb0 undrained, lb1 restarted), then backend b2 dies:
	// each host's prober decides on its own; the spread is between the moments each host
	// took b2 out (its health transition, which republishes the table at once).
	must(t, c.ctl(lb0, &st, "undrain-host"))
	c.hang(1, false)
	lb1 = c.startLB(1)
	c.waitUp(lb1, 3)
	c.waitGateways("lb0 undrained and lb1 back", 0, 1, 2)
	before, before6 := tr.byBackend(), tr6.byBackend()
	start = time.Now()
	must(t, c.tn.Backends[2].Kill())
	hosts := []*lbProc{lb0, lb1, lb2}
	var since []time.Time
	for _, p := range hosts {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if bs, err := p.api().Backends(ctx, "web"); err == nil {
				i := slices.IndexFunc(bs, func(b control.BackendStatus) bool { return b.Name == "b2" })
				if i >= 0 && !bs[i].Active {
					since = append(since, bs[i].Since)
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still sends new flows to the dead b2", p.host.Name())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first, last := slices.MinFunc(since, time.Time.Compare), slices.MaxFunc(since, time.Time.Compare)
	time.Sleep(500 * time.Millisecond)
	ok, failed = tr.requests(start, time.Now())
	n, dead := tr.alive()
	after := tr.byBackend()
	t.Logf("RESULT backend b2 killed: hosts took it out %v..%v after the kill, spread %v; request loop %d ok %d failed; "+
		"long connections on b2 before %d (lost with it), on b0+b1 %d -> %d",
		first.Sub(start).Round(time.Millisecond), last.Sub(start).Round(time.Millisecond), last.Sub(first).Round(time.Millisecond),
		ok, failed, before["b2"], before["b0"]+before["b1"], after["b0"]+after["b1"])
	if after["b0"]+after["b1"] != before["b0"]+before["b1"] || after["b2"] != 0 {
		t.Errorf("connections to live backends lost when b2 died: before %v after %v\n%s", before, after, strings.Join(dead, "\n"))
	}
	if n != after["b0"]+after["b1"] {
		t.Errorf("alive %d, by backend %v", n, after)
	}
	if after6 := tr6.byBackend(); after6["b0"]+after6["b1"] != before6["b0"]+before6["b1"] || after6["b2"] != 0 {
		t.Errorf("IPv6 connections to live backends lost when b2 died: before %v after %v", before6, after6)
	}
	if spread := last.Sub(first); spread > time.Second {
		t.Errorf("hosts took b2 out %v apart (probe interval 200ms, fall 2)", spread)
	}

	// 6. A clean stop (SIGTERM) withdraws first, keeps forwarding for withdraw_wait, exits.
	start = time.Now()
	must(t, lb2.cmd.Process.Signal(syscall.SIGTERM))
	gone, gone6 := converge("lb2 stopping", start, 0, 1)
	select {
	case err := <-lb2.exited:
		if err != nil {
			t.Errorf("lb2 exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lb2 did not exit on SIGTERM")
	}
	exited := time.Since(start)
	t.Logf("RESULT SIGTERM lb2: routes withdrawn %v (IPv6 %v) after the signal, process exited after %v (withdraw_wait 1s)",
		gone, gone6, exited.Round(time.Millisecond))
	if exited < time.Second || gone > exited || gone6 > exited {
		t.Errorf("shutdown: withdrawn after %v, exited after %v: want withdraw first, then a 1s wait", gone, exited)
	}
	n6, _ := tr6.alive()
	settled := tr.settled(time.Now(), 12*time.Second) && tr6.settled(time.Now(), 12*time.Second)
	n2, _ := tr.alive()
	n62, _ := tr6.alive()
	if !settled || n2 != n || n62 != n6 {
		t.Errorf("long connections lost on a clean stop: IPv4 %d -> %d, IPv6 %d -> %d", n, n2, n6, n62)
	}
	t.Logf("RESULT SIGTERM lb2: long connections alive IPv4 %d -> %d, IPv6 %d -> %d", n, n2, n6, n62)
}
