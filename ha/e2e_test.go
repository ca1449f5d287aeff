package ha

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// Privileged end-to-end tests: routers in the LB namespaces of a testnet OneArm topology
// (client, lb0, lb1 on one bridge), real raw sockets, the client as the observer whose
// neighbour table must follow the master.

const e2eInterval = 100 * time.Millisecond

// e2eNet builds client + two LB namespaces (no VIP on them: the routers own it).
func e2eNet(t *testing.T, v6 bool) *lab.Net {
	t.Helper()
	return testnet.New(t, lab.Config{LBs: 2, Backends: 1, NoVIPOnLB: true, NoHTTP: true, DisableIPv6: !v6})
}

func e2eConfig(n *lab.Net, v6 bool, prio uint8, preempt bool) Config {
	vip := n.VIP
	if v6 {
		vip = n.VIP6
	}
	return Config{Interface: "eth0", VirtualRouterID: 42, Priority: prio, AdvertInterval: e2eInterval,
		Preempt: &preempt, VIPs: []netip.Addr{vip}}
}

// lbRouter is a Router in an LB namespace whose hooks put the VIP on (and take it off) eth0,
// as keepalived does, so the client can reach whichever LB is master.
type lbRouter struct {
	r      *Router
	tr     Transport
	host   *lab.Host
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func vipPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func startLBRouter(t *testing.T, h *lab.Host, cfg Config, onState ...func(lr *lbRouter, from, to State)) *lbRouter {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	lr := &lbRouter{host: h, done: make(chan error, 1)}
	// The sockets are opened inside the LB's namespace and stay there.
	if err := h.Do(func() error {
		var err error
		lr.tr, err = OpenTransport(&cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	on := false
	hooks := Hooks{
		OnMaster: func() error {
			mu.Lock()
			defer mu.Unlock()
			if on {
				return nil
			}
			on = true
			return h.AddAddr(cfg.Interface, vipPrefix(cfg.VIPs[0]))
		},
		OnBackup: func() error {
			mu.Lock()
			defer mu.Unlock()
			if !on {
				return nil
			}
			on = false
			return h.DelAddr(cfg.Interface, vipPrefix(cfg.VIPs[0]))
		},
	}
	for _, f := range onState {
		hooks.OnState = func(from, to State, _ uint8) { f(lr, from, to) }
	}
	r, err := New(cfg, hooks, WithTransport(lr.tr), WithLogger(testLogger(t).With("node", h.Name())))
	if err != nil {
		t.Fatal(err)
	}
	lr.r = r
	ctx, cancel := context.WithCancel(context.Background())
	lr.cancel = cancel
	go func() { lr.done <- r.Run(ctx) }()
	t.Cleanup(func() { lr.stop() })
	return lr
}

// stop resigns cleanly (priority 0) and waits for Run.
func (lr *lbRouter) stop() error {
	lr.cancel()
	return lr.wait()
}

// crash kills the transport: no priority-0 advertisement goes out, like a dead host.
func (lr *lbRouter) crash() error {
	lr.tr.Close()
	return lr.wait()
}

func (lr *lbRouter) wait() error {
	lr.once.Do(func() { lr.err = <-lr.done })
	return lr.err
}

// vipSettles waits until the VIP is on the host's eth0 (want) or off it: a router's state
// changes before its hook moves the address, so a state observed is not yet the address.
func vipSettles(t *testing.T, h *lab.Host, vip netip.Addr, want bool) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for hasVIP(t, h, vip) != want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// hasVIP reports whether the VIP is on the host's eth0.
func hasVIP(t *testing.T, h *lab.Host, vip netip.Addr) bool {
	t.Helper()
	l, err := h.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == vip {
			return true
		}
	}
	return false
}

// waitMaster polls until r is master and returns how long that took from since.
func waitMaster(t *testing.T, r *Router, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for time.Since(since) < within {
		if r.State() == Master {
			return time.Since(since)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("not master %v after the event (state %v)", within, r.State())
	return 0
}

// clientNeighbour is the client's neighbour entry for vip (nil if none).
func clientNeighbour(t *testing.T, n *lab.Net, vip netip.Addr) net.HardwareAddr {
	t.Helper()
	mac, err := n.Client.Neighbor("eth0", vip)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func pingVIP(t *testing.T, n *lab.Net, vip netip.Addr) {
	t.Helper()
	if out, err := n.Client.Run("ping", "-c", "1", "-W", "2", vip.String()); err != nil {
		t.Fatalf("ping %v: %v\n%s", vip, err, out)
	}
}

func macOf(h *lab.Host) net.HardwareAddr { return h.Ifaces[0].MAC }

func TestE2EFailover(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { e2eFailover(t, v6) })
	}
}

func e2eFailover(t *testing.T, v6 bool) {
	n := e2eNet(t, v6)
	lb0, lb1 := n.LBs[0], n.LBs[1]
	cfgA, cfgB := e2eConfig(n, v6, 200, true), e2eConfig(n, v6, 100, true)
	vip := cfgA.VIPs[0]
	if err := cfgB.Validate(); err != nil {
		t.Fatal(err)
	}
	skewB := time.Duration(256-100) * e2eInterval / 256
	downB := 3*e2eInterval + skewB

	a := startLBRouter(t, lb0, cfgA)
	waitMaster(t, a.r, time.Now(), 5*time.Second)
	b := startLBRouter(t, lb1, cfgB)
	time.Sleep(5 * downB)
	if b.r.State() != Backup || hasVIP(t, lb1, vip) {
		t.Fatalf("backup took over while the master advertised: %v", b.r.Status())
	}
	if st := b.r.Status(); st.Master != a.tr.Source() || st.AdvertsReceived < 10 || st.MasterDownInterval != downB {
		t.Fatalf("backup status: master %v (want %v), received %d, down interval %v",
			st.Master, a.tr.Source(), st.AdvertsReceived, st.MasterDownInterval)
	}
	if !hasVIP(t, lb0, vip) {
		t.Fatal("master hook did not put the VIP on lb0")
	}
	pingVIP(t, n, vip)
	if mac := clientNeighbour(t, n, vip); !bytes.Equal(mac, macOf(lb0)) {
		t.Fatalf("client resolves the VIP to %v, want lb0 %v", mac, macOf(lb0))
	}

	// Clean stop: priority 0, b takes over after its skew time.
	stopAt := time.Now()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	took := waitMaster(t, b.r, stopAt, 5*time.Second)
	t.Logf("takeover after a clean stop (priority 0): %v (skew %v)", took, skewB)
	if took > skewB+e2eInterval {
		t.Errorf("takeover after priority 0 took %v, want about the skew time %v", took, skewB)
	}
	// The client sent nothing: only b's announcement can have moved its entry.
	waitNeighbour(t, n, vip, macOf(lb1))

	// Preemption: a comes back with the higher priority and takes over again.
	a = startLBRouter(t, lb0, cfgA)
	waitMaster(t, a.r, time.Now(), 5*time.Second)
	waitFor(t, "b yields to the preempting master", 5*time.Second, func() bool { return b.r.State() == Backup })
	waitNeighbour(t, n, vip, macOf(lb0))

	// Crash: the master stops sending without priority 0.
	crashAt := time.Now()
	if err := a.crash(); err == nil {
		t.Fatal("Run returned nil after its transport was closed")
	}
	took = waitMaster(t, b.r, crashAt, 5*time.Second)
	t.Logf("takeover after a crash: %v (Master_Down_Interval %v)", took, downB)
	if took < downB-e2eInterval-10*time.Millisecond || took > downB+e2eInterval {
		t.Errorf("takeover after a crash took %v, want within (%v, %v]", took, downB-e2eInterval, downB)
	}
	waitNeighbour(t, n, vip, macOf(lb1))
	pingVIP(t, n, vip)
}

// waitNeighbour waits until the client's entry for vip holds mac, without sending to vip.
func waitNeighbour(t *testing.T, n *lab.Net, vip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	waitFor(t, "client neighbour entry for "+vip.String()+" -> "+mac.String(), 5*time.Second, func() bool {
		return bytes.Equal(clientNeighbour(t, n, vip), mac)
	})
}

func TestE2ENoPreempt(t *testing.T) {
	n := e2eNet(t, false)
	cfgA, cfgB := e2eConfig(n, false, 200, false), e2eConfig(n, false, 100, false)
	a := startLBRouter(t, n.LBs[0], cfgA)
	waitMaster(t, a.r, time.Now(), 5*time.Second)
	b := startLBRouter(t, n.LBs[1], cfgB)
	time.Sleep(5 * e2eInterval)
	if err := a.crash(); err == nil {
		t.Fatal("Run returned nil after its transport was closed")
	}
	waitMaster(t, b.r, time.Now(), 5*time.Second)
	// a returns with the higher priority but preemption off: b stays master.
	a = startLBRouter(t, n.LBs[0], cfgA)
	time.Sleep(10 * e2eInterval)
	if a.r.State() != Backup || b.r.State() != Master {
		t.Fatalf("preempt off: returning router %v, master %v", a.r.State(), b.r.State())
	}
	if hasVIP(t, n.LBs[0], n.VIP) || !hasVIP(t, n.LBs[1], n.VIP) {
		t.Fatal("the VIP moved although preemption is off")
	}
}

// TestE2ETakeoverTimes repeats both failovers and logs the distribution (for docs/bench/ha.md).
func TestE2ETakeoverTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("repeated failovers: skipped in -short")
	}
	n := e2eNet(t, false)
	cfgA, cfgB := e2eConfig(n, false, 200, true), e2eConfig(n, false, 100, true)
	const rounds = 5
	var clean, crash []time.Duration
	b := startLBRouter(t, n.LBs[1], cfgB)
	for range rounds {
		for _, kind := range []string{"clean", "crash"} {
			a := startLBRouter(t, n.LBs[0], cfgA)
			waitMaster(t, a.r, time.Now(), 5*time.Second)
			waitFor(t, "b backup", 5*time.Second, func() bool { return b.r.State() == Backup })
			time.Sleep(3 * e2eInterval)
			at := time.Now()
			if kind == "clean" {
				a.stop()
				clean = append(clean, waitMaster(t, b.r, at, 5*time.Second))
			} else {
				a.crash()
				crash = append(crash, waitMaster(t, b.r, at, 5*time.Second))
			}
		}
	}
	t.Logf("advert_interval %v, priorities 200/100: clean stop %s; crash %s", e2eInterval, dist(clean), dist(crash))
}

func dist(d []time.Duration) string {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return "min " + d[0].Round(time.Millisecond).String() + " median " + d[len(d)/2].Round(time.Millisecond).String() +
		" max " + d[len(d)-1].Round(time.Millisecond).String()
}

// TestE2EUnicast: the same over unicast peers instead of the multicast group.
func TestE2EUnicast(t *testing.T) {
	n := e2eNet(t, false)
	lb0, lb1 := n.LBs[0], n.LBs[1]
	cfgA, cfgB := e2eConfig(n, false, 200, true), e2eConfig(n, false, 100, true)
	cfgA.UnicastPeers = []netip.Addr{lb1.Addr()}
	cfgB.UnicastPeers = []netip.Addr{lb0.Addr()}
	a := startLBRouter(t, lb0, cfgA)
	waitMaster(t, a.r, time.Now(), 5*time.Second)
	b := startLBRouter(t, lb1, cfgB)
	time.Sleep(6 * e2eInterval)
	st := b.r.Status()
	if st.State != Backup || st.Master != lb0.Addr() || st.AdvertsReceived < 3 {
		t.Fatalf("unicast backup: %+v", st)
	}
	pingVIP(t, n, n.VIP)
	waitNeighbour(t, n, n.VIP, macOf(lb0))
	if err := a.crash(); err == nil {
		t.Fatal("Run returned nil after its transport was closed")
	}
	waitMaster(t, b.r, time.Now(), 5*time.Second)
	waitNeighbour(t, n, n.VIP, macOf(lb1))
}
