package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// `xlb bench sink` and `xlb bench gen` as two processes on two "hosts" (namespaces): a data
// link with two queues (one AF_XDP socket and pinned thread per queue on each side) and a
// management link for the control connection. A mix of TCP SYNs and ACKs in IMIX sizes at a
// fixed rate: the generator's total and the sink's, asked over the control connection, agree.
// twoHosts makes a generator and a sink namespace joined by a data link g0/s0 with queues
// queues and a management link m0/m1 (198.18.2.1, 198.18.2.2); it returns s0's MAC.
func twoHosts(t *testing.T, queues int) (gen, sink *lab.NS, s0mac string) {
	t.Helper()
	testnet.Skip(t)
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	for _, p := range []struct {
		ns   **lab.NS
		role string
	}{{&gen, "gen"}, {&sink, "sink"}} {
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
	pair := func(a, b string, queues int, addrA, addrB string) string {
		_, lb, err := gen.AddVeth(a, b, 1500, queues)
		if err == nil {
			err = gen.Handle().LinkSetNsFd(lb, int(sink.NsHandle()))
		}
		if err == nil {
			lb, err = sink.Handle().LinkByName(b)
		}
		if err == nil {
			err = sink.Handle().LinkSetUp(lb)
		}
		if err == nil && addrA != "" {
			err = gen.AddAddr(a, netip.MustParsePrefix(addrA))
		}
		if err == nil && addrB != "" {
			err = sink.AddAddr(b, netip.MustParsePrefix(addrB))
		}
		if err != nil {
			t.Fatal(err)
		}
		return lb.Attrs().HardwareAddr.String()
	}
	s0mac = pair("g0", "s0", queues, "", "")
	pair("m0", "m1", 1, "198.18.2.1/24", "198.18.2.2/24")
	return gen, sink, s0mac
}

func TestE2EBenchGenSink(t *testing.T) {
	gen, sink, s0mac := twoHosts(t, 2)
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sinkOut := &testnet.Output{}
	sc := exec.Command(bin, "bench", "sink", "--iface", "s0", "--cpus", "1,0", "--listen", "198.18.2.2:9450",
		"--duration", "30s")
	sc.Stdout, sc.Stderr = sinkOut, sinkOut
	if err := sink.Start(sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink:\n%s", sinkOut.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(sinkOut.String(), "control on"); {
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not start:\n%s", sinkOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := "s0 (driver veth, MTU 1500, 2 queue(s), AF_XDP copy mode, CPUs [1 0])"; !strings.Contains(sinkOut.String(), want) {
		t.Errorf("sink does not say %q:\n%s", want, sinkOut.String())
	}
	out, err := gen.Run(bin, "bench", "gen", "--iface", "g0", "--cpus", "0,1", "--dst-mac", s0mac, "--dst", "198.18.0.100",
		"--size", "imix", "--proto", "tcp-syn:1,tcp-ack:9", "--flows", "100000", "--rate", "20k", "--duration", "2500ms",
		"--sink", "198.18.2.2:9450")
	if err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	t.Logf("gen:\n%s", out)
	defer func() {
		if t.Failed() { // where the frames went: veth's per-queue XDP counters
			o, _ := sink.Run("ethtool", "-S", "s0")
			t.Logf("ethtool -S s0:\n%s", o)
		}
	}()
	text := string(out)
	if !strings.Contains(text, "g0 (driver veth, MTU 1500, 2 queue(s), AF_XDP copy mode, CPUs [0 1])") {
		t.Error("the generator does not state its port")
	}
	if n := len(regexp.MustCompile(`(?m)^ +\d+s sent +\d+ pps .* sink received +\d+ pps$`).FindAllString(text, -1)); n < 2 {
		t.Errorf("%d per-second lines with both sides' counts, want 2", n)
	}
	m := regexp.MustCompile(`total: sent (\d+) frames .*sink received (\d+), loss .*sockets lost (\d+)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no total line")
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	lost, _ := strconv.Atoi(m[3])
	// Every frame sent is accounted for: received, or lost at the sink's sockets (when a
	// loaded host leaves the sink's threads without a CPU long enough to fill their rings).
	if sent < 40000 || got+lost != sent || got < sent/2 {
		t.Errorf("sent %d, sink received %d and its sockets lost %d: want about 50000, each counted once", sent, got, lost)
	}
	if !strings.Contains(text, "latency (send to sink, ") {
		t.Error("no latency line: generator and sink share this host")
	}
	if !regexp.MustCompile(`(?m)^ +1s received +\d+ pps`).MatchString(sinkOut.String()) {
		t.Errorf("the sink prints no per-second counts:\n%s", sinkOut.String())
	}
	cliSearch(t, gen, bin, s0mac)
}

// `xlb bench lab`: the three-host lab from the command line, with this binary's `xlb run` as
// the device under test; the report has the veth limits and a converged search.
func TestE2EBenchLab(t *testing.T) {
	testnet.Skip(t)
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stderr strings.Builder
	plots := t.TempDir()
	cmd := exec.Command(bin, "bench", "lab", "--size", "64", "--trial", "200ms", "--fractions", "0.5", "--markdown", "--plot", plots)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench lab: %v\n%s", err, stderr.String())
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"| veth | xdp-drop | 64 udp |", "| veth | xdp-tx | 64 udp |", "| rfc2544 | xlb-run-dr | 64 udp |",
		"| rfc2544-latency | xlb-run-dr | 64 udp |", "converged in", "sink received"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// --plot: the search's throughput chart, an SVG naming the device under test.
	svg, err := os.ReadFile(filepath.Join(plots, "rate-rfc2544.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "xlb-run-dr") {
		t.Errorf("--plot: rate-rfc2544.svg %d bytes (%v); stderr:\n%s", len(svg), err, stderr.String())
	}
}

func TestBenchLabFlags(t *testing.T) {
	for _, args := range [][]string{{"--size", "20"}, {"--trial", "0s"}, {"--fractions", "2"}, {"extra"}} {
		if code, _, errs := runXLB(append([]string{"bench", "lab"}, args...)...); code != 2 || !strings.Contains(errs, "usage") {
			t.Errorf("bench lab %v: exit %d, %q", args, code, errs)
		}
	}
}

// cliSearch runs the RFC 2544 search from the command line, the veth as the device under
// test, against the sink of TestE2EBenchGenSink.
func cliSearch(t *testing.T, gen *lab.NS, bin, s0mac string) {
	t.Helper()
	out, err := gen.Run(bin, "bench", "gen", "--iface", "g0", "--cpus", "0", "--queues", "1", "--dst-mac", s0mac,
		"--dst", "198.18.0.100", "--sink", "198.18.2.2:9450", "--rfc2544", "--size", "64,1518", "--trial", "200ms",
		"--fractions", "0.5", "--dut", "veth", "--markdown")
	if err != nil {
		t.Fatalf("gen --rfc2544: %v\n%s", err, out)
	}
	t.Logf("gen --rfc2544:\n%s", out)
	for _, want := range []string{"| rfc2544 | veth | 64 udp |", "| rfc2544 | veth | 1518 udp |", "| rfc2544-latency | veth | 64 udp |",
		"converged in", "g0 (driver veth, MTU 1500, 1 queue(s), AF_XDP copy mode, CPUs [0])"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}
