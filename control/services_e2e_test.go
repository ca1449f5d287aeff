package control

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// The end-to-end tests of the IPVS-style service features: persistence, service groups,
// slow start. Each runs the real controller, health checks and data path in namespaces
// with real HTTP (root only; skipped otherwise).

// startServices starts the controller and data path in the LB with the YAML y.
func startServices(t *testing.T, tn *lab.Net, y string) (*Controller, *dataplane.Dataplane) {
	t.Helper()
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	cfg, err := config.Parse("services.yaml", []byte(y))
	must(t, err)
	var dp *dataplane.Dataplane
	must(t, tn.LB.Do(func() (err error) {
		dc := DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize = 2048, 512
		dp, err = dataplane.New(dc)
		return err
	}))
	t.Cleanup(func() { _ = dp.Close() })
	c, err := New(cfg, Options{
		Publisher:   dp,
		Stats:       dp,
		Resolver:    NewKernelResolverIn(tn.LB.NsHandle()),
		HealthNetns: health.InNetns(tn.LB.Path()),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	must(t, c.Start(ctx))
	t.Cleanup(func() { c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	must(t, dp.Start(sctx))
	return c, dp
}

// waitBackend waits until backend name of service svc has health want ("up", "down").
func waitBackend(t *testing.T, c *Controller, svc, name, want string) time.Time {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		bs, err := c.Backends(svc)
		must(t, err)
		for _, b := range bs {
			if b.Name == name && b.Health == want && b.Active == (want == "up") {
				return time.Now()
			}
		}
	}
	t.Fatalf("backend %s of %s not %s within 10s", name, svc, want)
	return time.Time{}
}

func backendYAML(b *strings.Builder, tn *lab.Net, n int) {
	for _, be := range tn.Backends[:n] {
		fmt.Fprintf(b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
	}
	b.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2}\n")
}

// persistYAML is a round-robin service with persistence over the first n backends.
func persistYAML(tn *lab.Net, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nconn_table: {size: 16384, persistence_size: 1024}\n"+
		"services:\n  - name: web\n    vip: %s\n    port: 80\n    scheduler: rr\n    persistence: {timeout: 300s}\n    backends:\n", tn.VIP)
	backendYAML(&b, tn, n)
	return b.String()
}

// connections opens n new connections of the client to addr, from CPU 0 and 1 in turn,
// one request each, and counts the answers per backend.
func connections(t *testing.T, tn *lab.Net, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		be, err := getOn(tn, i%2, addr)
		if err != nil {
			t.Fatalf("GET from %s: %v (so far %v)", addr, err, got)
		}
		got[be]++
	}
	return got
}

// only returns the one backend of got, or "" when there are several.
func only(got map[string]int) string {
	if len(got) != 1 {
		return ""
	}
	for be := range got {
		return be
	}
	return ""
}

// TestE2EPersistence: with round-robin, 20 connections of one client would visit every
// backend; with persistence they all reach one, on both workers of a two-queue LB; adding
// a backend changes nothing, draining its backend changes nothing, killing it moves the
// client (and every later connection follows).
func TestE2EPersistence(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, DisableIPv6: true, Queues: 2})
	spreadQueues(t, tn.Client)
	c, dp := startServices(t, tn, persistYAML(tn, 2))
	for _, be := range tn.Backends[:2] {
		waitBackend(t, c, "web", be.Name, "up")
	}
	url := netip.AddrPortFrom(tn.VIP, 80).String()
	got := connections(t, tn, url, 20)
	home := only(got)
	if home == "" {
		t.Fatalf("20 connections of one client: %v, want one backend", got)
	}
	t.Logf("20 connections: %v", got)
	// Both workers scheduled some of them (RSS spreads connections over the two queues).
	time.Sleep(100 * time.Millisecond) // the workers publish their counters once per batch
	ws := dp.Stats()
	if len(ws) != 2 {
		t.Fatalf("%d workers, want 2", len(ws))
	}
	for _, w := range ws {
		if w.ConnMisses == 0 {
			t.Errorf("worker %d scheduled none of the client's connections: the test does not cover two cores", w.Queue)
		}
		t.Logf("worker %d: new flows %d, persisted %d", w.Queue, w.ConnMisses, w.ConnPersisted)
	}

	if used, capacity := dp.PersistStats(); used < 1 || capacity != 1024 {
		t.Errorf("persistence table: %d of %d slots used, want at least 1 of 1024 (conn_table.persistence_size)", used, capacity)
	}
	// A backend added: the client stays.
	must(t, c.Reload(mustParse(t, persistYAML(tn, 3))))
	waitBackend(t, c, "web", tn.Backends[2].Name, "up")
	if got := connections(t, tn, url, 20); only(got) != home {
		t.Errorf("after a backend was added: %v, want all on %s", got, home)
	}
	// Drained (weight 0): its persistent client stays, as in IPVS.
	must(t, c.Drain("web", home))
	if got := connections(t, tn, url, 10); only(got) != home {
		t.Errorf("with its backend drained: %v, want all on %s", got, home)
	}
	must(t, c.SetWeight("web", home, 100))
	// Killed: the client moves, every connection to one new backend.
	var killed *lab.Backend
	for _, be := range tn.Backends {
		if be.Name == home {
			killed = be
		}
	}
	must(t, killed.Kill())
	t.Cleanup(func() { _ = killed.Revive() })
	waitBackend(t, c, "web", home, "down")
	got = connections(t, tn, url, 20)
	if moved := only(got); moved == "" || moved == home {
		t.Errorf("after %s was killed: %v, want all on one other backend", home, got)
	}
	t.Logf("after %s was killed: %v", home, got)
}

func mustParse(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("services.yaml", []byte(y))
	must(t, err)
	return cfg
}

// spreadQueues maps the client's eth0 tx queue 0 to CPU 0 and queue 1 to CPU 1 (XPS), so
// a connection dialled from CPU q leaves on queue q; a veth delivers a frame on the same
// queue of its peer and the bridge keeps it, so it reaches the LB's worker q. This stands
// in for a NIC's RSS spreading one client's connections over the LB's cores.
func spreadQueues(t *testing.T, h *lab.Host) {
	t.Helper()
	script := "echo 1 > /sys/class/net/eth0/queues/tx-0/xps_cpus && echo 2 > /sys/class/net/eth0/queues/tx-1/xps_cpus"
	if out, err := exec.Command("ip", "netns", "exec", h.Name(), "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("xps: %v\n%s", err, out)
	}
}

// getOn opens a connection of the client from CPU cpu (so on its tx queue cpu, see
// spreadQueues) and returns the backend that answers a GET on it.
func getOn(tn *lab.Net, cpu int, addr string) (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return "", err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := tn.Client.Dial(ctx, "tcp", addr) // the SYN leaves from this thread, on cpu
	if serr := unix.SchedSetaffinity(0, &old); err == nil {
		err = serr
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	return testnet.NewHTTPConn(c).Get(2 * time.Second)
}

// TestE2EServiceGroup: one service on two VIPs and the ports 80 and 8080-8081 (a range),
// with persistence: the client reaches it on every pair, always on one backend (one
// scheduler, one persistence for the group), and not on a port outside the group.
func TestE2EServiceGroup(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	vip2 := netip.MustParseAddr("198.18.0.101")
	must(t, tn.LB.AddAddr("eth0", netip.PrefixFrom(vip2, 32)))
	for _, be := range tn.Backends {
		must(t, be.AddAddr("lo", netip.PrefixFrom(vip2, 32)))
		for _, port := range []int{8080, 8081} {
			if _, err := be.ServeHTTP(be.Name, port); err != nil {
				t.Fatal(err)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: group\n    vips: [%s, %s]\n    ports: [80, 8080-8081]\n"+
		"    scheduler: rr\n    persistence: {timeout: 60s}\n    backends:\n", tn.VIP, vip2)
	backendYAML(&b, tn, 2)
	c, _ := startServices(t, tn, b.String())
	for _, be := range tn.Backends {
		waitBackend(t, c, "group", be.Name, "up")
	}
	seen := map[string]int{}
	for _, vip := range []netip.Addr{tn.VIP, vip2} {
		for _, port := range []uint16{80, 8080, 8081} {
			addr := netip.AddrPortFrom(vip, port).String()
			got := connections(t, tn, addr, 4)
			t.Logf("%s: %v", addr, got)
			for be, n := range got {
				seen[be] += n
			}
		}
	}
	if only(seen) == "" {
		t.Errorf("24 connections over 2 VIPs and 3 ports: %v, want one backend (one persistence for the group)", seen)
	}
	if be, err := getOn(tn, 0, netip.AddrPortFrom(vip2, 8082).String()); err == nil {
		t.Errorf("port 8082, outside the group, answered by %s", be)
	}
	if l := c.List(context.Background()); len(l.Services) != 1 || l.Services[0].Flags != "persistent 60 mask 255.255.255.255 group 6 pairs" {
		t.Errorf("ctl list's service: %+v", l.Services)
	}
	svcs := c.Services()
	if len(svcs) != 1 || svcs[0].Name != "group" || strings.Join(svcs[0].VIPs, ",") != tn.VIP.String()+","+vip2.String() ||
		strings.Join(svcs[0].Ports, ",") != "80,8080-8081" || svcs[0].Persistence != "1m0s/32" {
		t.Errorf("services %+v", svcs)
	}
}

// TestE2EOnePacket: twelve datagrams of one UDP flow to a round-robin service with
// one_packet are spread over both backends (every datagram scheduled); to the same service
// without it they all reach one backend (the flow's table entry).
func TestE2EOnePacket(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	for _, be := range tn.Backends {
		for _, port := range []int{5353, 5354} {
			pc, err := be.ListenPacket("udp4", netip.AddrPortFrom(tn.VIP, uint16(port)).String())
			must(t, err)
			t.Cleanup(func() { pc.Close() })
			go func() { // answers every datagram with the backend's name, from the VIP
				buf := make([]byte, 512)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo([]byte(be.Name), from)
				}
			}()
		}
	}
	var b strings.Builder
	b.WriteString("interfaces: [{name: eth0}]\nservices:\n")
	for _, s := range []struct {
		name string
		port int
		one  bool
	}{{"dns-one", 5353, true}, {"dns", 5354, false}} {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n    port: %d\n    protocol: udp\n    scheduler: rr\n    one_packet: %v\n    backends:\n",
			s.name, tn.VIP, s.port, s.one)
		for _, be := range tn.Backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		b.WriteString("    health: {kind: http, port: 80, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1}\n")
	}
	c, dp := startServices(t, tn, b.String())
	for _, svc := range []string{"dns-one", "dns"} {
		for _, be := range tn.Backends {
			waitBackend(t, c, svc, be.Name, "up")
		}
	}
	ask := func(port uint16) map[string]int {
		pc, err := tn.Client.ListenPacket("udp4", ":0")
		must(t, err)
		defer pc.Close()
		dst := &net.UDPAddr{IP: tn.VIP.AsSlice(), Port: int(port)}
		got := map[string]int{}
		buf := make([]byte, 512)
		for range 12 {
			_, err := pc.WriteTo([]byte("q"), dst)
			must(t, err)
			must(t, pc.SetReadDeadline(time.Now().Add(2*time.Second)))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("port %d: no answer: %v (so far %v)", port, err, got)
			}
			got[string(buf[:n])]++
		}
		return got
	}
	one, plain := ask(5353), ask(5354)
	t.Logf("one_packet: %v; without: %v", one, plain)
	if len(one) != 2 || one["b0"] != 6 {
		t.Errorf("one_packet: 12 datagrams of one flow went %v, want 6 on each backend", one)
	}
	if only(plain) == "" {
		t.Errorf("without one_packet: 12 datagrams of one flow went %v, want one backend", plain)
	}
	time.Sleep(50 * time.Millisecond)
	var onePkts, entries uint64
	for _, w := range dp.Stats() {
		onePkts += w.ConnOnePacket
		entries += w.ConnEntries
	}
	if onePkts != 12 || entries != 1 {
		t.Errorf("one-packet count %d, table entries %d: want 12 and 1 (the plain flow's)", onePkts, entries)
	}
}

// TestE2ESlowStart: two least-conn services on the same three backends, one with
// slow_start, under a request loop of new connections each. A backend that was down comes
// back: without slow start it takes nearly every new flow at once (it has no connections),
// with it its share ramps up over the slow_start. The figures (its new flows per half
// second) are logged.
func TestE2ESlowStart(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, DisableIPv6: true})
	alt := make([]*lab.HTTPServer, len(tn.Backends)) // the backends' servers on port 8080
	for i, be := range tn.Backends {
		s, err := be.ServeHTTP(be.Name, 8080)
		must(t, err)
		alt[i] = s
	}
	c, _ := startServices(t, tn, slowStartYAML(tn))
	for _, svc := range []string{"plain", "slow"} {
		for _, be := range tn.Backends {
			waitBackend(t, c, svc, be.Name, "up")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: time.Second})
	loads := []*testnet.Load{
		testnet.StartLoad(ctx, client, fmt.Sprintf("http://%s/", netip.AddrPortFrom(tn.VIP, 80)), 3),
		testnet.StartLoad(ctx, client, fmt.Sprintf("http://%s/", netip.AddrPortFrom(tn.VIP, 8080)), 3),
	}
	defer func() {
		for _, l := range loads {
			l.Stop()
		}
	}()
	time.Sleep(2 * time.Second)
	b2 := tn.Backends[2]
	must(t, alt[2].Kill())
	must(t, b2.Kill())
	waitBackend(t, c, "plain", b2.Name, "down")
	waitBackend(t, c, "slow", b2.Name, "down")
	time.Sleep(3 * time.Second) // its table entries expire (tcp_fin 2s)
	counts := func() [2][3]uint64 {
		var out [2][3]uint64
		for i, be := range tn.Backends {
			out[0][i], out[1][i] = be.HTTP.Requests(), alt[i].Requests()
		}
		return out
	}
	must(t, alt[2].Revive())
	must(t, b2.Revive())
	waitBackend(t, c, "plain", b2.Name, "up")
	waitBackend(t, c, "slow", b2.Name, "up")
	flows, share := sampleRevived(counts)
	for s, name := range []string{"without slow start", "slow_start 6s"} {
		var line strings.Builder
		for w := range windows {
			fmt.Fprintf(&line, " %d(%.0f%%)", 2*flows[s][w], 100*share[s][w])
		}
		t.Logf("revived backend, %s: new flows/s (share) per 0.5 s:%s", name, line.String())
	}
	// Without slow start the revived backend has no connections, so least-conn sends it
	// every new flow until it holds as many as the others (2 s of flows at tcp_fin 2s):
	// most of the first half second. With it, its weight starts at 1/20: least-conn still
	// gives a backend without connections a first burst (a twentieth of the others'
	// count), then little. In isolation that first half second held 10-24% of the new
	// flows (14 runs); with the whole suite running on two CPUs, 30%.
	if share[0][0] < 0.5 || share[1][0] > 0.4 || share[0][0] < 2*share[1][0] {
		t.Errorf("the revived backend's share of the first half second's new flows: %.0f%% without slow start, %.0f%% with; want most without, little with",
			100*share[0][0], 100*share[1][0])
	}
	if last := (share[1][windows-2] + share[1][windows-1]) / 2; last < 0.15 {
		t.Errorf("after the ramp the revived backend takes %.0f%% of new flows, want about a third", 100*last)
	}
	for _, l := range loads {
		if ok, _, _ := l.Phase(); ok == 0 {
			t.Error("a request loop answered nothing")
		}
	}
}

// slowStartYAML is two least-conn services on the same backends, "plain" on port 80 and
// "slow" on 8080 with slow_start 6s, with short tcp_fin entries (2s) so that least-conn
// counts recent connections.
func slowStartYAML(tn *lab.Net) string {
	var b strings.Builder
	b.WriteString("interfaces: [{name: eth0}]\nconn_table: {timeouts: {tcp: 10s, tcp_fin: 2s, tcp_syn: 5s}}\nservices:\n")
	for _, s := range []struct {
		name string
		port int
		slow string
	}{{"plain", 80, "0s"}, {"slow", 8080, "6s"}} {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n    port: %d\n    scheduler: least-conn\n    slow_start: %s\n    backends:\n",
			s.name, tn.VIP, s.port, s.slow)
		for _, be := range tn.Backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		b.WriteString("    health: {kind: http, port: 80, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}\n")
	}
	return b.String()
}

const window, windows = 500 * time.Millisecond, 18

// sampleRevived counts, per half second, the requests backend 2 answered (flows) and its
// share of all three backends' (share), for both services (counts()[service][backend]).
func sampleRevived(counts func() [2][3]uint64) (flows [2][windows]uint64, share [2][windows]float64) {
	// The windows start when the revived backend answers its first request of the service
	// without slow start (least-conn sends it nearly every new flow from then on): on a
	// loaded machine the request loops can stall for a second around the revival, and
	// windows counted from the health transition would then measure the stall.
	prev := counts()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if cur := counts(); cur[0][2] > prev[0][2] {
			break
		}
	}
	prev = counts()
	for w := range windows {
		time.Sleep(window)
		cur := counts()
		for s := range 2 {
			var total uint64
			for i := range 3 {
				total += cur[s][i] - prev[s][i]
			}
			flows[s][w] = cur[s][2] - prev[s][2]
			if total > 0 {
				share[s][w] = float64(flows[s][w]) / float64(total)
			}
		}
		prev = cur
	}
	return flows, share
}

// TestE2EPersistenceIPv6: IPv6 clients of one /64 (the default prefix) share a backend:
// connections from two addresses of the client's /64, in turn, all reach one backend.
// (Health kind none: checks from the LB to the backends over IPv6 timed out in the lab.)
func TestE2EPersistenceIPv6(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2})
	second := netip.MustParseAddr("2001:2::50") // the client's /64 is 2001:2::/64
	must(t, tn.Client.AddAddr("eth0", netip.PrefixFrom(second, 128)))
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web6\n    vip: %s\n    port: 80\n    scheduler: rr\n"+
		"    persistence: {timeout: 60s}\n    backends:\n", tn.VIP6)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr6())
	}
	b.WriteString("    health: {kind: none}\n")
	c, _ := startServices(t, tn, b.String())
	for _, be := range tn.Backends {
		waitBackend(t, c, "web6", be.Name, "up")
	}
	got := map[string]int{}
	for i := range 12 {
		src := tn.Client.Addr6()
		if i%2 == 1 {
			src = second
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := tn.Client.DialWith(ctx, d, "tcp", netip.AddrPortFrom(tn.VIP6, 80).String())
		cancel()
		must(t, err)
		be, err := testnet.NewHTTPConn(conn).Get(2 * time.Second)
		conn.Close()
		must(t, err)
		got[be]++
	}
	if only(got) == "" {
		t.Errorf("12 connections from two addresses of one /64: %v, want one backend", got)
	}
	t.Logf("12 connections from %s and %s: %v", tn.Client.Addr6(), second, got)
}
