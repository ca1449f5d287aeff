package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// The end-to-end test runs the real controller, health checks, data path
// and kernel next-hop resolution in namespaces that internal/testnet builds
// (root only; it skips otherwise).

const (
	e2eInterval = 300 * time.Millisecond
	e2eTimeout  = 200 * time.Millisecond
	e2eRise     = 2
	e2eFall     = 3
)

func e2eConfig(tn *lab.Net, backends int, weight0 uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tn.VIP)
	for i := range backends {
		w := uint32(100)
		if i == 0 {
			w = weight0
		}
		fmt.Fprintf(&b, "      - {name: %s, address: %s, weight: %d}\n", tn.Backends[i].Name, tn.Backends[i].Addr(), w)
	}
	fmt.Fprintf(&b, "    health: {kind: http, path: /healthz, interval: %v, timeout: %v, rise: %d, fall: %d}\n",
		e2eInterval, e2eTimeout, e2eRise, e2eFall)
	return b.String()
}

// persistent is one long-lived HTTP/1.1 connection to the VIP.
type persistent struct {
	c       *testnet.HTTPConn
	backend string
}

// outcome is one request of the continuous load.
type outcome struct {
	start   time.Time
	end     time.Time
	backend string
	err     error
}

func TestE2EFailoverAndReload(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 4, DisableIPv6: true})
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	cfg, err := config.Parse("e2e.yaml", []byte(e2eConfig(tn, 3, 100)))
	must(t, err)

	var dp *dataplane.Dataplane
	must(t, tn.LB.Do(func() (err error) {
		dc := DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize, dc.ConnTableSize = 2048, 512, 1<<14
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
	defer cancel()
	must(t, c.Start(ctx))
	t.Cleanup(func() { c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	must(t, dp.Start(sctx))
	scancel()
	metrics := NewMetrics(c, nil)
	api := &Client{Base: serve(t, NewHandler(c, HandlerOptions{Metrics: metrics.Handler()}))}

	waitHealth := func(name, want string, max time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < max {
			bs, err := api.Backends(ctx, "web")
			must(t, err)
			for _, b := range bs {
				if b.Name == name && b.Health == want && b.Active == (want == "up") {
					return time.Since(start)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("backend %s not %s within %v", name, want, max)
		return 0
	}
	for _, b := range tn.Backends[:3] {
		waitHealth(b.Name, "up", 5*time.Second)
	}

	// Long-lived connections, some on every backend.
	var conns []*persistent
	for range 12 {
		nc, err := tn.Client.Dial(ctx, "tcp", net.JoinHostPort(tn.VIP.String(), "80"))
		must(t, err)
		t.Cleanup(func() { nc.Close() })
		p := &persistent{c: testnet.NewHTTPConn(nc)}
		p.backend, err = p.c.Get(2 * time.Second)
		must(t, err)
		conns = append(conns, p)
	}
	checkConns := func(when string, skip string) {
		t.Helper()
		for i, p := range conns {
			if p.backend == skip {
				continue
			}
			got, err := p.c.Get(2 * time.Second)
			if err != nil || got != p.backend {
				t.Errorf("%s: long-lived connection %d on %s: got %q, %v", when, i, p.backend, got, err)
			}
		}
	}

	// Continuous load: a new connection per request.
	var mu sync.Mutex
	var results []outcome
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				start := time.Now()
				name, err := lab.Get(loadCtx, client, url)
				if loadCtx.Err() != nil {
					return
				}
				mu.Lock()
				results = append(results, outcome{start, time.Now(), name, err})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)

	// Kill b1: it must be out within interval*fall + timeout.
	b1 := tn.Backend("b1")
	killed := time.Now()
	must(t, b1.HTTP.Kill())
	bound := e2eInterval*e2eFall + e2eTimeout
	detect := waitHealth("b1", "down", 3*bound)
	down := time.Now()
	t.Logf("b1 detected down after %v (bound interval*fall+timeout = %v)", detect.Round(time.Millisecond), bound)
	if detect > bound+150*time.Millisecond { // the API poll and a loaded CI machine
		t.Errorf("detection took %v, bound %v", detect, bound)
		bs, _ := api.Backends(ctx, "web")
		for _, r := range bs[1].Results {
			t.Logf("b1 probe at %+v: ok %v, %.1fms, %s", r.Time.Sub(killed), r.OK, r.LatencyMS, r.Err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	checkConns("after b1 died", "b1")

	// Bring it back: up after rise successes.
	revived := time.Now()
	must(t, b1.HTTP.Revive())
	back := waitHealth("b1", "up", 3*(e2eInterval*e2eRise+e2eTimeout))
	t.Logf("b1 back up after %v (rise %d, interval %v)", back.Round(time.Millisecond), e2eRise, e2eInterval)
	time.Sleep(700 * time.Millisecond)

	// Reload: add b3 and change b0's weight; existing connections stay.
	y := e2eConfig(tn, 4, 300)
	ncfg, err := config.Parse("e2e.yaml", []byte(y))
	must(t, err)
	t0 := time.Now()
	must(t, c.Reload(ncfg))
	reloadTime := time.Since(t0)
	t.Logf("reload (4 backends, new weight) applied in %v", reloadTime.Round(time.Microsecond))
	waitHealth("b3", "up", 5*time.Second)
	time.Sleep(700 * time.Millisecond)
	checkConns("after reload", "b1") // b1's own connections died with it
	stopLoad()
	wg.Wait()

	// Requests: only those in flight when b1 died, or begun before it was
	// taken out (plus a grace for the snapshot to reach the workers), may
	// fail.
	grace := 100 * time.Millisecond
	seen := map[string]int{}
	seenAfterRevive := map[string]int{}
	var failed, failedOutside int
	for _, r := range results {
		if r.err != nil {
			failed++
			if r.end.Before(killed) || r.start.After(down.Add(grace)) {
				failedOutside++
				t.Errorf("request at +%v failed outside the failover window: %v", r.start.Sub(killed), r.err)
			}
			continue
		}
		seen[r.backend]++
		if r.start.After(revived.Add(back)) {
			seenAfterRevive[r.backend]++
		}
		if r.backend == "b1" && r.start.After(killed) && r.start.Before(revived) {
			t.Errorf("request at +%v answered by b1 while it was dead", r.start.Sub(killed))
		}
	}
	t.Logf("load: %d requests, %d failed (all within the failover window), by backend %v", len(results), failed, seen)
	if len(results) < 50 {
		t.Errorf("only %d requests made", len(results))
	}
	for _, name := range []string{"b0", "b1", "b2", "b3"} {
		if seenAfterRevive[name] == 0 {
			t.Errorf("no request reached %s after b1 came back / the reload", name)
		}
	}

	// The API and the metrics show it.
	svcs, err := api.Services(ctx)
	must(t, err)
	if svcs[0].Backends != 4 || svcs[0].Up != 4 {
		t.Errorf("services = %+v", svcs)
	}
	resp, err := http.Get(api.Base + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	must(t, err)
	if f := fams["xlb_reloads_total"]; f == nil || f.Metric[0].Counter.GetValue() != 1 {
		t.Errorf("xlb_reloads_total = %v", f)
	}
	var rx float64
	for _, m := range fams["xlb_worker_rx_packets_total"].GetMetric() {
		rx += m.Counter.GetValue()
	}
	if rx < float64(len(results)) {
		t.Errorf("workers received %v packets for %d requests", rx, len(results))
	}
	for _, m := range fams["xlb_backend_weight"].GetMetric() {
		if hasLabel(m, "backend", "b0") && m.Gauge.GetValue() != 300 {
			t.Errorf("b0 weight metric = %v", m.Gauge.GetValue())
		}
	}
	for _, m := range fams["xlb_backend_probe_duration_seconds"].GetMetric() {
		if m.Histogram.GetSampleCount() == 0 {
			t.Errorf("no probe latency recorded: %v", m)
		}
	}
}

// TestE2ENAT runs a NAT service on the two-armed topology: the controller
// resolves the backends on net B and the route back to the client on net
// A from the kernel's neighbour table.
func TestE2ENAT(t *testing.T) {
	e2eNAT(t, "{kind: icmp, interval: 200ms, timeout: 100ms}")
}

// TestE2ENATHTTPCheck: the same with HTTP checks on the service port. The
// backends' replies to the LB's own checks come from the NAT backends'
// (address, port) and must reach the LB's kernel, not the workers.
func TestE2ENATHTTPCheck(t *testing.T) {
	e2eNAT(t, "{kind: http, path: /healthz, interval: 200ms, timeout: 150ms}")
}

func e2eNAT(t *testing.T, check string) {
	tn := testnet.New(t, lab.Config{Kind: lab.TwoArm, Backends: 2, DisableIPv6: true})
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}, {name: eth1}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    method: nat\n    backends:\n", tn.VIP)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s, port: 80}\n", be.Name, be.Addr())
	}
	fmt.Fprintf(&b, "    health: %s\n", check)
	cfg, err := config.Parse("nat.yaml", []byte(b.String()))
	must(t, err)
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	var dp *dataplane.Dataplane
	must(t, tn.LB.Do(func() (err error) {
		dc := DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize, dc.ConnTableSize = 2048, 512, 1<<14
		dp, err = dataplane.New(dc)
		return err
	}))
	t.Cleanup(func() { _ = dp.Close() })
	c, err := New(cfg, Options{Publisher: dp, Stats: dp, Resolver: NewKernelResolverIn(tn.LB.NsHandle()),
		HealthNetns: health.InNetns(tn.LB.Path()),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, c.Start(ctx))
	t.Cleanup(func() { c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	must(t, dp.Start(sctx))
	scancel()
	deadline := time.Now().Add(5 * time.Second)
	for c.Services()[0].Up != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("backends not up: %+v", c.Services())
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 3 * time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	first := time.Now()
	firstBE, err := lab.Get(ctx, client, url)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	t.Logf("first request from a new client took %v", time.Since(first).Round(time.Millisecond))
	tally := lab.Spread(ctx, client, url, 40, 30*time.Second)
	t.Logf("nat: %v", tally)
	if tally.Failed != 0 || len(tally.ByBackend) != 2 {
		t.Errorf("through nat: %v", tally)
	}
	var natReturns uint64
	for _, ws := range dp.Stats() {
		natReturns += ws.NATReturns
	}
	if natReturns == 0 {
		t.Error("no reply was translated back to the VIP")
	}
	// The first SYN-ACK to the new client usually beats the snapshot that
	// carries the route to it: the data path hands it to the kernel rather
	// than drop it (the client would wait a second for a retransmit).
	if tot := dp.Total(); tot.Drops[dataplane.DropNoRoute] != 0 {
		t.Errorf("%d replies dropped for want of a route to the client (%d handed to the kernel)",
			tot.Drops[dataplane.DropNoRoute], tot.ToKernel)
	}
	tally.ByBackend[strings.TrimSpace(firstBE)]++
	checkTraffic(t, c, dp, tally.ByBackend)
}

// settledTraffic returns service web's traffic and its backends' once two reads in a row
// agree (at most 5 s).
func settledTraffic(t *testing.T, c *Controller) (*TrafficStatus, []BackendStatus) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr := c.Services()[0].Traffic
		bes, err := c.Backends("web")
		must(t, err)
		again := c.Services()[0].Traffic
		if tr != nil && again != nil && *tr == *again || time.Now().After(deadline) {
			return again, bes
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkTraffic checks the per-service and per-backend counters of service
// web (API and metrics) against the requests sent, one new connection each
// (requests: by backend name): a flow per request, every forwarded packet of
// the service counted once.
func checkTraffic(t *testing.T, c *Controller, dp *dataplane.Dataplane, requests map[string]int) {
	t.Helper()
	sent := 0
	for _, n := range requests {
		sent += n
	}
	// The connections' last packets (FIN, ACK) may still be on their way: read the
	// service's and the backends' counters once they are still from one read to the next.
	tr, bes := settledTraffic(t, c)
	if tr == nil || tr.NewFlows != uint64(sent) || tr.NoBackendDrops != 0 {
		t.Fatalf("service traffic %+v, want %d new flows", tr, sent)
	}
	// Every packet the workers transmitted was either one of the service's
	// (client to backend) or a NAT reply translated back (those to a client
	// not yet routed went through the kernel).
	tot := dp.Total()
	if tr.Packets+tot.NATReturns != tot.TxPackets+tot.ToKernel {
		t.Errorf("service packets %d + nat returns %d != transmitted %d + handed to the kernel %d",
			tr.Packets, tot.NATReturns, tot.TxPackets, tot.ToKernel)
	}
	// ipvsadm's OutPkts: the NAT replies translated back, by the backend that sent them
	// (none for direct routing, whose replies bypass the LB).
	if tr.OutPackets != tot.NATReturns || tr.OutBytes < 54*tr.OutPackets {
		t.Errorf("service out packets %d (%d bytes), nat returns %d", tr.OutPackets, tr.OutBytes, tot.NATReturns)
	}
	var pk, by, opk, oby uint64
	for _, b := range bes {
		if b.Traffic == nil || b.Traffic.NewFlows != uint64(requests[b.Name]) {
			t.Errorf("backend %s traffic %+v, want %d new flows", b.Name, b.Traffic, requests[b.Name])
			continue
		}
		if tot.NATReturns > 0 && requests[b.Name] > 0 && b.Traffic.OutPackets == 0 {
			t.Errorf("backend %s answered %d requests through NAT, no reply counted out", b.Name, requests[b.Name])
		}
		pk += b.Traffic.Packets
		by += b.Traffic.Bytes
		opk += b.Traffic.OutPackets
		oby += b.Traffic.OutBytes
	}
	if pk != tr.Packets || by != tr.Bytes || by < 54*pk {
		t.Errorf("backends: %d packets %d bytes, service: %d packets %d bytes", pk, by, tr.Packets, tr.Bytes)
	}
	if opk != tr.OutPackets || oby != tr.OutBytes {
		t.Errorf("backends: %d packets %d bytes out, service: %d packets %d bytes out", opk, oby, tr.OutPackets, tr.OutBytes)
	}
	mfs, err := NewMetrics(c, nil).Registry().Gather()
	must(t, err)
	got := map[string]float64{}
	for _, f := range mfs {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	if v := got["xlb_service_new_flows_total/web"]; v != float64(sent) {
		t.Errorf("xlb_service_new_flows_total = %v, want %d", v, sent)
	}
	if v := got["xlb_service_packets_total/web"]; v < float64(tr.Packets) {
		t.Errorf("xlb_service_packets_total = %v, want at least %d", v, tr.Packets)
	}
	if v := got["xlb_service_out_packets_total/web"]; v < float64(tr.OutPackets) || (tr.OutPackets == 0) != (v == 0) {
		t.Errorf("xlb_service_out_packets_total = %v, want at least %d", v, tr.OutPackets)
	}
	for name, n := range requests {
		if v := got["xlb_backend_new_flows_total/"+name+"/web"]; v != float64(n) { // labels sorted: backend, service
			t.Errorf("xlb_backend_new_flows_total{backend=%s} = %v, want %d", name, v, n)
		}
	}
	t.Logf("web: %+v; requests by backend %v", *tr, requests)
}

// TestE2ENeighbourChange checks that a backend's new MAC in the LB's
// neighbour table reaches the published snapshot without a restart.
func TestE2ENeighbourChange(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    health: {kind: none}\n    backends:\n", tn.VIP)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
	}
	cfg, err := config.Parse("neigh.yaml", []byte(b.String()))
	must(t, err)
	pub := &fakePublisher{}
	c, err := New(cfg, Options{Publisher: pub, Resolver: NewKernelResolverIn(tn.LB.NsHandle()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	must(t, c.Start(context.Background()))
	t.Cleanup(func() { c.Close() })
	mac := func() [6]byte { return pub.last().Service(0).Targets[1].Hop.DstMAC }
	old := mac()
	if old == ([6]byte{}) {
		t.Fatal("b1 not resolved at start")
	}
	fake := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01}
	if out, err := tn.LB.Run("ip", "neigh", "replace", tn.Backends[1].Addr().String(), "lladdr",
		net.HardwareAddr(fake[:]).String(), "dev", "eth0", "nud", "permanent"); err != nil {
		t.Fatalf("ip neigh replace: %v %s", err, out)
	}
	start := time.Now()
	for mac() != fake {
		if time.Since(start) > 3*time.Second {
			t.Fatalf("MAC of b1 still %x in the snapshot, want %x", mac(), fake)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("new MAC published %v after ip neigh replace returned", time.Since(start).Round(time.Microsecond))
	if got := pub.last().Service(0).Targets[0].Hop.DstMAC; got == fake {
		t.Error("b0 took b1's MAC")
	}
}
