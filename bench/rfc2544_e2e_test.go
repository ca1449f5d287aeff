package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// hosts is three namespaces standing for three machines: the generator host (g0), the LB
// host (l0 towards the generator, l1 towards the backend) and the backend, where the sink
// receives (s0). Addresses: g0 198.18.0.1, l0 198.18.0.2, l1 198.18.1.2, s0 198.18.1.11.
type hosts struct {
	gen, lb, sink *lab.NS
	g0, l0        netlink.Link
}

// wire makes a veth pair a (in from) / b (in to), MTU 1500, offloads off, both up.
func wire(t *testing.T, from, to *lab.NS, a, b string, addrA, addrB string) (netlink.Link, netlink.Link) {
	t.Helper()
	la, lb, err := from.AddVeth(a, b, 1500, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := from.Handle().LinkSetNsFd(lb, int(to.NsHandle())); err != nil {
		t.Fatalf("move %s to %s: %v", b, to.Name(), err)
	}
	if lb, err = to.Handle().LinkByName(b); err == nil {
		err = to.Handle().LinkSetUp(lb)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns   *lab.NS
		name string
		addr string
	}{{from, a, addrA}, {to, b, addrB}} {
		if err := x.ns.AddAddr(x.name, netip.MustParsePrefix(x.addr)); err != nil {
			t.Fatal(err)
		}
	}
	lb, _ = to.Handle().LinkByName(b)
	return la, lb
}

func newHosts(t *testing.T) *hosts {
	t.Helper()
	testnet.Skip(t)
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	h := &hosts{}
	for _, p := range []struct {
		ns   **lab.NS
		role string
	}{{&h.gen, "gen"}, {&h.lb, "lb"}, {&h.sink, "sink"}} {
		ns, err := lab.NewNS(id, p.role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		if err := ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"); err != nil {
			t.Fatal(err)
		}
		*p.ns = ns
	}
	h.g0, h.l0 = wire(t, h.gen, h.lb, "g0", "l0", "198.18.0.1/24", "198.18.0.2/24")
	wire(t, h.lb, h.sink, "l1", "s0", "198.18.1.2/24", "198.18.1.11/24")
	return h
}

// buildXLB builds the xlb binary once per test binary.
func buildXLB(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xlb-dev/xlb/cmd/xlb").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startXLBRun runs the real `xlb run` daemon on the LB host: one dr Maglev service on the
// VIP, port 9000/udp, the sink host as its backend, no health check (the sink answers none).
func startXLBRun(t *testing.T, h *hosts) (bin string) {
	t.Helper()
	bin = buildXLB(t)
	conf := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(conf, []byte(`interfaces: [{name: l0}, {name: l1}]
services:
  - name: bench
    vip: 198.18.0.100
    port: 9000
    protocol: udp
    method: dr
    scheduler: maglev
    backends: [{address: 198.18.1.11}]
    health: {kind: none}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testnet.Output{}
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := h.lb.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run:\n%s", logs.String())
		}
	})
	return bin
}

// xlbPackets asks the daemon (xlb ctl) how many packets its data path counted for the
// service.
func xlbPackets(t *testing.T, h *hosts, bin string) uint64 {
	t.Helper()
	out, err := h.lb.Run(bin, "ctl", "--json", "services")
	var svcs []control.ServiceStatus
	if err == nil {
		err = json.Unmarshal(out, &svcs)
	}
	if err != nil || len(svcs) != 1 || svcs[0].Traffic == nil {
		t.Fatalf("xlb ctl services: %v\n%s", err, out)
	}
	return svcs[0].Traffic.Packets
}

// sinkControl serves the sink's counts on a TCP control connection, as between two hosts
// (here from the test's namespace), and returns the generator's end.
func sinkControl(ctx context.Context, t *testing.T, sink *Sink) *SinkClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ServeControl(ctx, l, sink.Counts)
	sc, err := DialSink(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// waitForwarding waits until a slow trial gets through without loss: xlb is up (it resolves
// the backend's MAC by ARP first; the sink lets ARP through to its kernel). It returns that
// trial.
func waitForwarding(ctx context.Context, t *testing.T, gen PortGenConfig, counts CountsFunc) Trial {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		low, err := RunTrial(ctx, gen, counts, 20000, 200*time.Millisecond, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if low.Received == low.Sent.Packets && low.Sent.Packets > 0 {
			return low
		}
		if time.Now().After(deadline) {
			t.Fatalf("xlb run does not forward: sent %d, sink received %d", low.Sent.Packets, low.Received)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A real `xlb run` daemon on the LB host forwards (dr, maglev) from the generator host to
// the backend host, where the sink counts; the generator asks the sink over a TCP control
// connection. The RFC 2544 search converges, and the two sides' counts agree.
func TestE2ERFC2544ThreeHosts(t *testing.T) {
	h := newHosts(t)
	bin := startXLBRun(t, h)
	sink, err := StartSink(Port{Iface: "s0", NS: h.sink.NsHandle(), CPUs: []int{1 % runtime.NumCPU()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if sink.Info().ZeroCopy {
		t.Errorf("sink on veth reports zero copy: %s", sink.Info())
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sc := sinkControl(ctx, t, sink)
	gen := PortGenConfig{Port: Port{Iface: "g0", NS: h.gen.NsHandle(), CPUs: []int{0}},
		Stream: StreamConfig{Base: TemplateConfig{DstMAC: [6]byte(h.l0.Attrs().HardwareAddr),
			Dst: netip.MustParseAddr("198.18.0.100"), DstPort: 9000, SrcPool: ClientPool, Flows: 1024, Size: 64}}}
	low := waitForwarding(ctx, t, gen, sc.Counts)
	if low.Latency == nil || low.Latency.Count() != low.Received {
		t.Errorf("latency of %v frames timed, %d received (generator and sink share this host)", low.Latency, low.Received)
	}

	var trials []string
	cfg := SearchConfig{Gen: gen, Counts: sc.Counts, Sizes: []int{64}, Trial: 250 * time.Millisecond,
		Settle: 100 * time.Millisecond, Resolution: 0.05, MaxTrials: 10, Fractions: []float64{0.5},
		Progress: func(s string) { trials = append(trials, s) }}
	start := time.Now()
	p0 := xlbPackets(t, h, bin)
	res, err := Search(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	// Three counts of the search's frames: the sink's, xlb's own, the generator's.
	var sent, received uint64
	all := r.Trials
	for _, l := range r.Latency {
		all = append(all, l.Trial)
	}
	for _, tr := range all {
		sent, received = sent+tr.Sent.Packets, received+tr.Received
	}
	if p := xlbPackets(t, h, bin) - p0; received > p || p > sent {
		t.Errorf("sink received %d, xlb counted %d, generator sent %d: want sink <= xlb <= generator", received, p, sent)
	} else {
		t.Logf("sink received %d, xlb counted %d, generator sent %d", received, p, sent)
	}
	t.Logf("trials:\n%s", strings.Join(trials, "\n"))
	if !r.Converged || r.Throughput <= 0 {
		t.Fatalf("search did not converge: throughput %.0f pps after %d trials", r.Throughput, len(r.Trials))
	}
	for _, tr := range r.Trials {
		// Both sides count the same frames: the sink never counts more than was sent.
		if tr.Received > tr.Sent.Packets {
			t.Errorf("trial at %.0f pps: sink received %d, generator sent %d", tr.Rate, tr.Received, tr.Sent.Packets)
		}
	}
	b := r.Best
	if lost := b.Sent.Packets - b.Received; float64(lost) > cfg.Loss*float64(b.Sent.Packets) {
		t.Errorf("best trial lost %d of %d", lost, b.Sent.Packets)
	}
	if len(r.Latency) != 1 || r.Latency[0].Trial.Latency == nil || r.Latency[0].Trial.Latency.Count() == 0 {
		t.Errorf("no latency at half the throughput: %+v", r.Latency)
	}
	rep := SearchReport(cfg, "xlb run (dr)", res, start)
	var out strings.Builder
	if err := rep.WriteMarkdown(&out, "test"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| rfc2544 | xlb run (dr) | 64 udp |", "rfc2544-latency", "g0 (driver veth", "s0 (driver veth", "copy mode"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
	if err := sink.Close(); err != nil {
		t.Errorf("sink: %v", err)
	}
}

// A sink on a device without native XDP (a macvlan) falls back to generic XDP, copy mode,
// and says so.
func TestSinkGenericXDP(t *testing.T) {
	testnet.Skip(t)
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	ns, err := lab.NewNS(hex.EncodeToString(idb[:]), "generic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	va, _, err := ns.AddVeth("va", "vb", 1500, 1)
	if err != nil {
		t.Fatal(err)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "mv0", ParentIndex: va.Attrs().Index},
		Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := ns.Handle().LinkAdd(mv); err != nil {
		t.Skipf("no macvlan here: %v", err)
	}
	if err := ns.Handle().LinkSetUp(mv); err != nil {
		t.Fatal(err)
	}
	s, err := StartSink(Port{Iface: "mv0", NS: ns.NsHandle(), Queues: 1, CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if info := s.Info(); !info.GenericXDP || info.ZeroCopy || !strings.Contains(info.String(), "copy mode, generic XDP") {
		t.Errorf("sink on a macvlan: %s", info)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}
