package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// captureRig is a running `xlb run` with a dr service (web, tcp/80 to b0) and a tunnel
// service (tun, udp/9000 to b1, whose echo server answers the client directly).
type captureRig struct {
	t   *testing.T
	tn  *lab.Net
	bin string
	dir string
}

// sock is the API socket of the rig's xlb run (not the default path, which another
// test's daemon may hold).
func (r *captureRig) sock() string { return filepath.Join(r.dir, "xlb.sock") }

func newCaptureRig(t *testing.T) *captureRig {
	testnet.Skip(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump is not installed (scripts/deps.sh installs it)")
	}
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true, Decap: true})
	r := &captureRig{t: t, tn: tn, dir: t.TempDir()}
	r.bin = filepath.Join(r.dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", r.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b0, b1 := tn.Backends[0], tn.Backends[1]
	conf := fmt.Sprintf(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: %[1]s
    port: 80
    method: dr
    backends: [{name: b0, address: %[2]s}]
    health: {kind: none}
  - name: tun
    vip: %[1]s
    port: 9000
    protocol: udp
    method: tunnel
    tunnel_source: %[4]s
    backends: [{name: b1, address: %[3]s}]
    health: {kind: none}
`, tn.VIP, b0.Addr(), b1.Addr(), tn.LB.Addr())
	conf += fmt.Sprintf("api: {socket: %s}\n", r.sock())
	path := filepath.Join(r.dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.ServeUDPEcho(":9000"); err != nil {
		t.Fatal(err)
	}
	logs := &testnet.Output{}
	cmd := exec.Command(r.bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := tn.LB.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run log:\n%s", logs.String())
		}
	})
	r.waitFor("both services forwarding", func() bool {
		svcs := r.services()
		return len(svcs) == 2 && svcs[0].Up == 1 && svcs[1].Up == 1
	})
	return r
}

func (r *captureRig) services() []control.ServiceStatus {
	out, err := r.tn.LB.Run(r.bin, "ctl", "--socket", r.sock(), "--json", "services")
	var svcs []control.ServiceStatus
	if err != nil || json.Unmarshal(out, &svcs) != nil {
		return nil
	}
	return svcs
}

// packets returns the packets the data path counted for a service.
func (r *captureRig) packets(service string) uint64 {
	for _, s := range r.services() {
		if s.Name == service && s.Traffic != nil {
			return s.Traffic.Packets
		}
	}
	r.t.Fatalf("no traffic count for %s", service)
	return 0
}

func (r *captureRig) waitFor(what string, ok func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// capture starts `xlb ctl capture args...` in the LB's namespace and returns once the
// capture is armed; the channel delivers its exit.
func (r *captureRig) capture(args ...string) (*exec.Cmd, *testnet.Output, <-chan error) {
	r.t.Helper()
	out := &testnet.Output{}
	cmd := exec.Command(r.bin, append([]string{"ctl", "--socket", r.sock(), "capture"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := r.tn.LB.Start(cmd); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(out.String(), "capturing from the xlb workers on eth0") {
		select {
		case err := <-exited:
			r.t.Fatalf("xlb ctl capture exited early: %v\n%s", err, out.String())
		case <-deadline:
			r.t.Fatalf("xlb ctl capture did not start:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return cmd, out, exited
}

// until calls send every 50ms until the capture exits, then checks its exit.
func (r *captureRig) until(exited <-chan error, out *testnet.Output, send func()) {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		send()
		select {
		case err := <-exited:
			if err != nil {
				r.t.Fatalf("xlb ctl capture: %v\n%s", err, out.String())
			}
			return
		case <-deadline:
			r.t.Fatalf("xlb ctl capture did not end:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *captureRig) tcpdump(file string) string {
	r.t.Helper()
	cmd := exec.Command("tcpdump", "-r", file, "-nn", "-e")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output() // one line per frame
	if err != nil {
		r.t.Fatalf("tcpdump -r %s: %v\n%s%s", file, err, out, stderr.String())
	}
	return string(out)
}

func (r *captureRig) udp() net.Conn {
	c, err := r.tn.Client.Dial(context.Background(), "udp", net.JoinHostPort(r.tn.VIP.String(), "9000"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// readPcapng returns the interface name of every packet of a pcapng file (pcapgo's reader).
func readPcapng(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		in, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, in.Name)
	}
}

var capReport = regexp.MustCompile(`(\d+) packets captured, (\d+) lost \(did not fit in the workers' rings\), ended by (\w+)`)

func report(t *testing.T, out string) (captured, lost int, end string) {
	t.Helper()
	m := capReport.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no capture report in:\n%s", out)
	}
	captured, _ = strconv.Atoi(m[1])
	lost, _ = strconv.Atoi(m[2])
	return captured, lost, m[3]
}

// TestE2ECapture: `xlb ctl capture` of a dr flow and of a tunnel flow, read back with
// tcpdump: the dr frame as received (client MAC to the LB) and as sent (the LB to b0's MAC),
// the tunnel frame as sent behind its IPIP header (LB to b1, the client's datagram inside).
// Then the capture's end when its client goes away (root only; skips otherwise).
func TestE2ECapture(t *testing.T) {
	r := newCaptureRig(t)
	tn := r.tn
	lbMAC, b0MAC := tn.LB.Ifaces[0].MAC.String(), tn.Backends[0].Ifaces[0].MAC.String()
	hc := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"

	dr := filepath.Join(r.dir, "dr.pcapng")
	_, out, exited := r.capture("--service", "web", "--count", "6", "-w", dr)
	r.until(exited, out, func() { _, _ = lab.Get(context.Background(), hc, url) })
	if n, lost, end := report(t, out.String()); n != 6 || lost != 0 || end != "count" {
		t.Errorf("dr capture: %d captured, %d lost, ended by %s; want 6, 0, count", n, lost, end)
	}
	dump := r.tcpdump(dr)
	toVIP := regexp.MustCompile(fmt.Sprintf(`(?m)^\S+ (\S+) > (\S+), ethertype IPv4 .*: %s\.\d+ > %s\.80: Flags`,
		regexp.QuoteMeta(tn.Client.Addr().String()), regexp.QuoteMeta(tn.VIP.String())))
	var rx, tx int
	for _, m := range toVIP.FindAllStringSubmatch(dump, -1) {
		switch {
		case m[2] == lbMAC:
			rx++
		case m[1] == lbMAC && m[2] == b0MAC:
			tx++
		}
	}
	if rx != 3 || tx != 3 {
		t.Errorf("dr capture: %d frames client->LB and %d LB->b0 (%s), want 3 and 3:\n%s", rx, tx, b0MAC, dump)
	}

	// With its only backend disabled, web drops: the frame as received, then as dropped
	// (the third interface, the reason as the packet's comment).
	if out, err := tn.LB.Run(r.bin, "ctl", "--socket", r.sock(), "disable", "web", "b0"); err != nil {
		t.Fatalf("ctl disable: %v %s", err, out)
	}
	drop := filepath.Join(r.dir, "drop.pcapng")
	_, out, exited = r.capture("--service", "web", "--count", "2", "-w", drop)
	r.until(exited, out, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, _ = lab.Get(ctx, hc, url)
	})
	if got := readPcapng(t, drop); len(got) != 2 || got[0] != "xlb-received" || got[1] != "xlb-dropped" {
		t.Errorf("a dropped frame: interfaces %v, want xlb-received, xlb-dropped", got)
	}
	if b, _ := os.ReadFile(drop); !bytes.Contains(b, []byte("no_backend")) {
		t.Error("the dropped frame's reason is not in the file")
	}

	tun := filepath.Join(r.dir, "tun.pcapng")
	c := r.udp()
	_, out, exited = r.capture("--service", "tun", "--count", "4", "-w", tun)
	r.until(exited, out, func() { _, _ = c.Write([]byte("hello")) })
	dump = r.tcpdump(tun)
	ipip := regexp.MustCompile(fmt.Sprintf(`length 67: %s > %s: %s\.\d+ > %s\.9000: UDP, length 5`,
		regexp.QuoteMeta(tn.LB.Addr().String()), regexp.QuoteMeta(tn.Backends[1].Addr().String()),
		regexp.QuoteMeta(tn.Client.Addr().String()), regexp.QuoteMeta(tn.VIP.String())))
	plain := regexp.MustCompile(fmt.Sprintf(`ethertype IPv4 \(0x0800\), length 47: %s\.\d+ > %s\.9000: UDP, length 5`,
		regexp.QuoteMeta(tn.Client.Addr().String()), regexp.QuoteMeta(tn.VIP.String())))
	if len(ipip.FindAllString(dump, -1)) != 2 || len(plain.FindAllString(dump, -1)) != 2 {
		t.Errorf("tunnel capture: want 2 datagrams as received and 2 behind an IPIP header (%v):\n%s", ipip, dump)
	}

	// A capture whose client goes away ends: the next one is not refused as busy.
	cmd, _, exited := r.capture("-w", filepath.Join(r.dir, "gone.pcapng"))
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	r.waitFor("a new capture after the client went away", func() bool {
		_, err := tn.LB.Run(r.bin, "ctl", "--socket", r.sock(), "capture", "--duration", "10ms", "-w", "/dev/null")
		return err == nil
	})
}

// TestE2ECaptureLoad: a burst that fits in the ring is captured whole (2 records per packet
// the service received, none lost); a burst into a ring of 16 records keeps at least what the
// ring holds and reports every record it lost: records written + lost = 2 per packet the
// service received (root only; skips otherwise).
func TestE2ECaptureLoad(t *testing.T) {
	r := newCaptureRig(t)
	c := r.udp()
	msg := []byte("load")

	// Both bursts end by duration; what the service received (its counter) is the truth:
	// frames the kernel dropped before xlb saw them are in neither side.
	const fit = 300
	file := filepath.Join(r.dir, "fit.pcapng")
	before := r.packets("tun")
	_, out, exited := r.capture("--service", "tun", "--ring", "1024", "--duration", "1500ms", "-w", file)
	for range fit {
		_, _ = c.Write(msg)
	}
	r.until(exited, out, func() {})
	seen := int(r.packets("tun") - before)
	if n, lost, end := report(t, out.String()); n != 2*seen || lost != 0 || end != "duration" || seen < fit/2 {
		t.Errorf("a burst that fits: %d captured, %d lost, ended by %s; want %d (2 per packet of the %d the service saw of %d sent), 0, duration",
			n, lost, end, 2*seen, seen, fit)
	}
	if got := strings.Count(r.tcpdump(file), "\n"); got != 2*seen {
		t.Errorf("tcpdump reads %d frames, want %d", got, 2*seen)
	}

	const burst = 5000
	file = filepath.Join(r.dir, "burst.pcapng")
	before = r.packets("tun")
	_, out, exited = r.capture("--service", "tun", "--ring", "16", "--duration", "3s", "-w", file)
	for range burst {
		_, _ = c.Write(msg)
	}
	r.until(exited, out, func() {})
	seen = int(r.packets("tun") - before)
	n, lost, end := report(t, out.String())
	t.Logf("burst of %d datagrams: the service saw %d, %d records captured, %d lost", burst, seen, n, lost)
	if end != "duration" || n < 16 || lost == 0 || n+lost != 2*seen {
		t.Errorf("a burst into a ring of 16: %d captured + %d lost, want %d (2 per packet) with some lost, ended by %s",
			n, lost, 2*seen, end)
	}
	if got := strings.Count(r.tcpdump(file), "\n"); got != n {
		t.Errorf("tcpdump reads %d frames, the report says %d", got, n)
	}
}

// TestE2ETop: `xlb ctl top` against a running xlb with a steady UDP flow through the tunnel
// service and HTTP requests through the dr service: plain lines (its output is not a
// terminal) with the packet rate of both services and their backends, and the UDP flow's
// connection-table entry (root only; skips otherwise).
func TestE2ETop(t *testing.T) {
	r := newCaptureRig(t)
	tn := r.tn
	c := r.udp()
	hc := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = c.Write([]byte("top"))
			if i%20 == 0 {
				_, _ = lab.Get(ctx, hc, url)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	out, err := tn.LB.Run(r.bin, "ctl", "--socket", r.sock(), "top", "--count", "3", "--interval", "300ms", "--sort", "name")
	cancel()
	<-done
	if err != nil {
		t.Fatalf("xlb ctl top: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != "TIME SERVICE BACKEND PPS BPS NEW_FLOWS_PER_S ACTIVE" || len(lines) != 1+3*4 {
		t.Fatalf("want a header and 3 refreshes of 4 lines (tun, b1, web, b0 sorted by name):\n%s", out)
	}
	for i, l := range lines[len(lines)-4:] {
		f := strings.Fields(l)
		if len(f) != 7 {
			t.Fatalf("line %q", l)
		}
		pps, _ := strconv.ParseFloat(f[3], 64)
		bps, _ := strconv.ParseFloat(f[4], 64)
		active, _ := strconv.Atoi(f[6])
		want := [][2]string{{"tun", "-"}, {"tun", "b1"}, {"web", "-"}, {"web", "b0"}}[i]
		if f[1] != want[0] || f[2] != want[1] || pps <= 0 || bps < 8*pps*40 || active < 1 {
			t.Errorf("line %q: want %s %s with packets/s > 0, bits/s >= 320 * packets/s and an active flow", l, want[0], want[1])
		}
	}
}
