package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
	"golang.org/x/sys/unix"
)

// The end-to-end tests run real traffic through namespaces that internal/testnet builds
// (root only; they skip otherwise) with the dataplane running in the LB's namespace.

// startDataplane sets the data path up on the LB's interfaces (inside its namespace).
func startDataplane(t *testing.T, lb *lab.Host, ifaces ...string) *Dataplane {
	t.Helper()
	return startDataplaneMode(t, lb, "auto", ifaces...)
}

func startDataplaneMode(t *testing.T, lb *lab.Host, mode string, ifaces ...string) *Dataplane {
	t.Helper()
	cfg := Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 14}
	for _, name := range ifaces {
		cfg.Interfaces = append(cfg.Interfaces, InterfaceConfig{Name: name, XDPMode: mode})
	}
	return startDataplaneConfig(t, lb, cfg)
}

func startDataplaneConfig(t *testing.T, lb *lab.Host, cfg Config) *Dataplane {
	t.Helper()
	dp := newIn(t, lb.NS, cfg)
	for _, info := range dp.Interfaces() {
		t.Logf("%s: xdp %s, zero copy %v, %d queue(s)", info.Name, info.XDPMode, info.ZeroCopy, info.Queues)
	}
	return dp
}

// newIn runs New inside ns and closes the Dataplane when the test ends. A kernel without
// XDP or AF_XDP skips the test (with the reason); any other error fails it.
func newIn(t testing.TB, ns *lab.NS, cfg Config) *Dataplane {
	t.Helper()
	var dp *Dataplane
	err := ns.Do(func() (err error) {
		dp, err = New(cfg)
		return err
	})
	switch {
	case errors.Is(err, xdpprog.ErrMode), errors.Is(err, unix.EAFNOSUPPORT):
		t.Skipf("kernel lacks XDP or AF_XDP support: %v", err)
	case err != nil:
		t.Fatalf("dataplane: %v", err)
	}
	t.Cleanup(func() {
		if err := dp.Close(); err != nil {
			t.Errorf("dataplane close: %v", err)
		}
	})
	return dp
}

func publishAndStart(t *testing.T, dp *Dataplane, s *Snapshot) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			sc, err := dp.steeringCounters()
			t.Logf("xdp counters %v (%v)", sc, err)
			for _, ws := range dp.Stats() {
				t.Logf("worker %d on cpu %d: %+v", ws.Queue, ws.CPU, ws.Counters)
			}
		}
	})
	if err := dp.Publish(s); err != nil {
		t.Fatalf("publish: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dp.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
}

// resolve asks the LB's kernel for the next hop towards addr.
func resolve(t *testing.T, lb *lab.Host, addr netip.Addr) NextHop {
	t.Helper()
	var hop NextHop
	err := lb.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		hop, err = ResolveNextHop(ctx, addr)
		return err
	})
	if err != nil {
		t.Fatalf("resolve %v: %v", addr, err)
	}
	return hop
}

// backendSpec builds a service over the topology's backends (their IPv4 or IPv6 address).
func backendSpec(t *testing.T, n *lab.Net, name string, index int, vip netip.Addr, port uint16, m Method) ServiceSpec {
	t.Helper()
	var bs []sched.Backend
	var ts []Target
	for i, b := range n.Backends {
		addr := b.Addr()
		if vip.Is6() {
			addr = b.Addr6()
		}
		bs = append(bs, sched.Backend{ID: uint32(i + 1), Name: b.Name, Weight: 1, Up: true})
		ts = append(ts, Target{Addr: addr, Hop: resolve(t, n.LB, addr)})
	}
	sv, err := sched.NewService(sched.ServiceConfig{Index: index, Strategy: sched.Maglev}, bs)
	if err != nil {
		t.Fatal(err)
	}
	return ServiceSpec{Name: name, VIP: vip, Port: port, Proto: encap.ProtoTCP, Method: m, Sched: sv, Targets: ts}
}

// httpGet makes one HTTP/1.0 request on a new connection and returns the backend's name
// (the body) and the client's port.
func httpGet(ctx context.Context, client *lab.Host, vip netip.Addr, port uint16) (string, uint16, error) {
	c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(vip, port).String())
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	lport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n"); err != nil {
		return "", lport, err
	}
	body, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", lport, err
	}
	s := string(body)
	if !strings.HasPrefix(s, "HTTP/1.0 200") {
		return "", lport, fmt.Errorf("response %q", s)
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), lport, nil
}

// checkSpread makes n requests and checks each was answered by the backend the service's
// Maglev table names for its flow.
func checkSpread(t *testing.T, tn *lab.Net, sp ServiceSpec, src netip.Addr, requests int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]int{}
	a, v6 := addr16(src)
	d, _ := addr16(sp.VIP)
	for i := range requests {
		name, lport, err := httpGet(ctx, tn.Client, sp.VIP, sp.Port)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		k := sched.Key{Src: a, Dst: d, SrcPort: lport, DstPort: sp.Port, Proto: encap.ProtoTCP, V6: v6}
		want := sp.Sched.Backend(sp.Sched.Lookup(&k)).Name
		if name != want {
			t.Fatalf("request %d from port %d answered by %s, the scheduler picked %s", i, lport, name, want)
		}
		got[name]++
	}
	return got
}

func TestE2EDR(t *testing.T) {
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { testDR(t, mode) })
	}
}

func testDR(t *testing.T, mode string) {
	tn := testnet.New(t, lab.Config{Backends: 3})
	dp := startDataplaneMode(t, tn.LB, mode, "eth0")
	if got := dp.Interfaces()[0].XDPMode; got != mode {
		t.Fatalf("xdp mode %s, asked for %s", got, mode)
	}
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp))
	got := checkSpread(t, tn, sp, tn.Client.Addr(), 60)
	t.Logf("spread: %v", got)
	if len(got) != 3 {
		t.Errorf("not every backend answered: %v", got)
	}
	c := settledTotal(dp)
	if c.RxPackets == 0 || c.TxPackets != c.RxPackets || c.Dropped() != 0 {
		t.Errorf("counters: %+v", c)
	}
	// Replies went straight to the client: the LB saw only client->VIP packets (no NAT
	// returns), at least 3 per request (SYN, ACK with the request, FIN).
	if c.NATReturns != 0 || c.RxPackets < 60*3 {
		t.Errorf("rx %d nat returns %d", c.RxPackets, c.NATReturns)
	}
	if errs := dp.WorkerErrors(); len(errs) != 0 {
		t.Errorf("workers: %v", errs)
	}

	// A clean stop detaches the program: the VIP's port 80 is the LB kernel's again (nothing
	// listens there, so it refuses the connection).
	if err := dp.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	l, err := tn.LB.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("xdp program %d still attached after Close", x.ProgId)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := httpGet(ctx, tn.Client, tn.VIP, 80); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("after Close, a request to the VIP: %v (want connection refused)", err)
	}
}

// TestE2EDRIPv6 also runs the worker busy-polling (InterfaceConfig.BusyPoll): it must
// forward the same and stop on Close although it never sleeps.
func TestE2EDRIPv6(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3})
	dp := startDataplaneConfig(t, tn.LB, Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 14,
		Interfaces: []InterfaceConfig{{Name: "eth0", BusyPoll: true}}})
	sp := backendSpec(t, tn, "web6", 0, tn.VIP6, 80, MethodDR)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp))
	got := checkSpread(t, tn, sp, tn.Client.Addr6(), 30)
	t.Logf("spread: %v", got)
	if len(got) < 2 {
		t.Errorf("30 flows all on one backend: %v", got)
	}
	closed := make(chan error, 1)
	go func() { closed <- dp.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a busy-polling worker did not stop within 10s of Close")
	}
}

func TestE2ETunnel(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, Decap: true})
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodTunnel)
	sp.TunnelSource = netip.PrefixFrom(tn.LB.Addr(), 32)
	sp6 := backendSpec(t, tn, "web6", 1, tn.VIP6, 80, MethodTunnel)
	sp6.TunnelSource = netip.PrefixFrom(tn.LB.Addr6(), 128)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp, sp6))
	got := checkSpread(t, tn, sp, tn.Client.Addr(), 30)
	got6 := checkSpread(t, tn, sp6, tn.Client.Addr6(), 15)
	t.Logf("spread: ipip %v, ip6ip6 %v", got, got6)
	if len(got) < 2 {
		t.Errorf("30 flows all on one backend: %v", got)
	}
	if c := dp.Total(); c.Dropped() != 0 || c.TxPackets == 0 {
		t.Errorf("counters: %+v", c)
	}
}

func TestE2ENAT(t *testing.T) {
	for _, separate := range []bool{false, true} {
		name := "shared-umem"
		if separate {
			name = "separate-umems"
		}
		t.Run(name, func(t *testing.T) { testNAT(t, separate) })
	}
}

func testNAT(t *testing.T, separate bool) {
	tn := testnet.New(t, lab.Config{Kind: lab.TwoArm, Backends: 3})
	cfg := Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 14, SeparateUMEMs: separate,
		Interfaces: []InterfaceConfig{{Name: "eth0"}, {Name: "eth1"}}}
	dp := startDataplaneConfig(t, tn.LB, cfg)
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodNAT)
	cli := tn.Client.Addr()
	routes := []Route{{Prefix: netip.PrefixFrom(cli, 32), Hop: resolve(t, tn.LB, cli)}}
	publishAndStart(t, dp, mustSnapshot(t, routes, sp))

	// Stats are read all along while the workers run (the race detector watches).
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				_ = dp.Stats()
				_ = dp.FlowStats()
			}
		}
	}()
	got := checkSpread(t, tn, sp, cli, 30)
	close(stop)
	<-readerDone
	t.Logf("spread: %v", got)
	if len(got) < 2 {
		t.Errorf("30 flows all on one backend: %v", got)
	}
	c := settledTotal(dp)
	if c.NATReturns == 0 || c.Dropped() != 0 || c.TxPackets != c.RxPackets {
		t.Errorf("counters: %+v", c)
	}
	if separate != (c.Copied == c.RxPackets) || (!separate && c.Copied != 0) {
		t.Errorf("separate UMEMs %v: %d of %d frames copied", separate, c.Copied, c.RxPackets)
	}
	t.Logf("rx %d tx %d nat returns %d copied %d", c.RxPackets, c.TxPackets, c.NATReturns, c.Copied)
}

// A long-lived connection keeps its backend when the backend set changes: its backend is
// drained (weight 0, so Maglev gives it no slot) and another backend is removed.
func TestE2ELongLivedConnection(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3})
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := tn.Client.Dial(ctx, "tcp", netip.AddrPortFrom(tn.VIP, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func() string {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.Header.Get("X-Backend")
	}
	first := ask()
	pos := -1
	for i, b := range tn.Backends {
		if b.Name == first {
			pos = i
		}
	}
	if pos < 0 {
		t.Fatalf("answered by %q", first)
	}
	// New set: the connection's backend drained, another one gone.
	gone := (pos + 1) % 3
	var bs []sched.Backend
	var ts []Target
	for i := range 3 {
		if i == gone {
			continue
		}
		b := sp.Sched.Backend(i)
		if i == pos {
			b.Weight = 0
		}
		bs = append(bs, b)
		ts = append(ts, sp.Targets[i])
	}
	sv, err := sched.NewService(sched.ServiceConfig{Index: 0, Strategy: sched.Maglev}, bs)
	if err != nil {
		t.Fatal(err)
	}
	sp2 := sp
	sp2.Sched, sp2.Targets = sv, ts
	if err := dp.Publish(mustSnapshot(t, nil, sp2)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if got := ask(); got != first {
			t.Fatalf("request %d after the change answered by %s, not %s", i, got, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// New connections follow the new set: never the drained or the removed backend.
	got := checkSpread(t, tn, sp2, tn.Client.Addr(), 10)
	if got[first] != 0 || got[tn.Backends[gone].Name] != 0 {
		t.Errorf("new flows after the change: %v", got)
	}
	if c := dp.Total(); c.ConnHits == 0 {
		t.Errorf("no connection-table hits: %+v", c)
	}
}

// Traffic that is not for a service still reaches the LB's kernel while the data path runs:
// ping to the LB's address and the VIP, TCP to a port on the LB (its address and the VIP).
func TestE2ENotForAService(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2})
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp))
	l, err := tn.LB.Listen("tcp", ":2222")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // the namespace's Close closes l
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "lb\n")
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, a := range []netip.Addr{tn.LB.Addr(), tn.VIP, tn.LB.Addr6()} {
		out, err := tn.Client.Run("ping", "-c", "2", "-i", "0.2", "-W", "2", a.String())
		if err != nil {
			t.Errorf("ping %v: %v\n%s", a, err, out)
		}
		c, err := tn.Client.Dial(ctx, "tcp", netip.AddrPortFrom(a, 2222).String())
		if err != nil {
			t.Errorf("tcp to %v:2222: %v", a, err)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "lb\n" {
			t.Errorf("tcp to %v:2222: %q, %v", a, b, err)
		}
	}
	// And the service still works next to it.
	if _, _, err := httpGet(ctx, tn.Client, tn.VIP, 80); err != nil {
		t.Errorf("service: %v", err)
	}
	sc, err := dp.steeringCounters()
	if err != nil {
		t.Fatal(err)
	}
	if sc["eth0"].Passed() == 0 || sc["eth0"].Redirected() == 0 {
		t.Errorf("xdp counters: %v", sc["eth0"])
	}
	if c := dp.Total(); c.Drops[DropNoService] != 0 {
		t.Errorf("the data path got non-service traffic: %+v", c)
	}
}

// Full-size segments do not fit the tunnel: the LB answers "fragmentation needed" / "packet
// too big" to the client, whose kernel lowers the path MTU and sends again, and the echo
// comes back whole.
func TestE2ETunnelPathMTU(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, Decap: true})
	for _, b := range tn.Backends {
		if _, err := b.ServeTCPEcho(":7"); err != nil {
			t.Fatal(err)
		}
	}
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "echo", 0, tn.VIP, 7, MethodTunnel)
	sp.TunnelSource = netip.PrefixFrom(tn.LB.Addr(), 32)
	sp6 := backendSpec(t, tn, "echo6", 1, tn.VIP6, 7, MethodTunnel)
	sp6.TunnelSource = netip.PrefixFrom(tn.LB.Addr6(), 128)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp, sp6))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := strings.Repeat("0123456789abcdef", 500) // 8000 bytes: several full-size segments
	for _, vip := range []netip.Addr{tn.VIP, tn.VIP6} {
		c, err := tn.Client.Dial(ctx, "tcp", netip.AddrPortFrom(vip, 7).String())
		if err != nil {
			t.Fatalf("dial %v: %v", vip, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = io.WriteString(c, msg) }()
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Errorf("echo through %v: %v", vip, err)
		}
		c.Close()
	}
	c := dp.Total()
	if c.ICMPReplies < 2 || c.Reasons[encap.ReplyICMP] != c.ICMPReplies {
		t.Errorf("icmp replies %d: %+v", c.ICMPReplies, c)
	}
	t.Logf("rx %d tx %d icmp replies %d", c.RxPackets, c.TxPackets, c.ICMPReplies)
}

// settledTotal returns the workers' counters once two reads 50 ms apart agree (at most
// 3 s): a worker publishes after each batch, and the connections' last packets may still
// be on their way when the clients are done.
func settledTotal(dp *Dataplane) Counters {
	c := dp.Total()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		again := dp.Total()
		if again == c {
			break
		}
		c = again
	}
	return c
}
