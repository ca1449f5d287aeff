package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2ERuntimeChanges runs the real `xlb run` and changes it with `xlb ctl` while a
// request loop runs: a backend added, an IPv6 service added and deleted, a backend drained
// and deleted. Long-lived connections to the backends that were not touched keep their
// backends and the loop loses no request; `ctl list` and `ctl conns` show what the clients
// saw; `ctl save` prints what `xlb run --check` accepts; a SIGHUP drops the changes.
func TestE2ERuntimeChanges(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, Queues: 2}) // two workers: listings read both
	dir := t.TempDir()
	bin := filepath.Join(dir, "xlb")
	sock := filepath.Join(dir, "xlb.sock")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "xlb.yaml")
	conf := fmt.Sprintf(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: %s
    port: 80
    backends:
      - {name: b0, address: %s}
      - {name: b1, address: %s}
    health: {kind: http, path: /healthz, interval: 200ms, timeout: 100ms, rise: 1}
api: {socket: %s}
`, tn.VIP, tn.Backends[0].Addr(), tn.Backends[1].Addr(), sock)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testnet.Output{}
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := tn.LB.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("xlb run log:\n%s", logs.String())
		}
	})
	ctl := func(args ...string) string {
		t.Helper()
		out, err := tn.LB.Run(bin, append([]string{"ctl", "--socket", sock}, args...)...)
		if err != nil {
			t.Fatalf("xlb ctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	up := func(service string) int {
		out, err := tn.LB.Run(bin, "ctl", "--socket", sock, "--json", "services")
		var svcs []control.ServiceStatus
		if err != nil || json.Unmarshal(out, &svcs) != nil {
			return -1
		}
		for _, s := range svcs {
			if s.Name == service {
				return s.Up
			}
		}
		return -1
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("b0 and b1 up", func() bool { return up("web") == 2 })

	ctx := context.Background()
	vipURL := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	vip6URL := "http://" + net.JoinHostPort(tn.VIP6.String(), "80") + "/"
	// Long-lived connections: they must stay on their backends unless it is removed.
	var conns []longConn
	for range 8 {
		nc, err := tn.Client.Dial(ctx, "tcp", net.JoinHostPort(tn.VIP.String(), "80"))
		if err != nil {
			t.Fatal(err)
		}
		hc := testnet.NewHTTPConn(nc)
		t.Cleanup(func() { hc.Close() })
		b, err := hc.Get(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, longConn{hc, b})
	}
	checkConns := func(phase string, removed string) {
		t.Helper()
		for i, lc := range conns {
			if lc.backend == removed {
				continue
			}
			if b, err := lc.c.Get(2 * time.Second); err != nil || b != lc.backend {
				t.Errorf("%s: long-lived connection %d (on %s): answered by %q, %v", phase, i, lc.backend, b, err)
			}
		}
	}

	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	// ctl list --stats counts the connections the clients made, per backend (first, while
	// the client's ports are fresh: a reused 4-tuple of a closed connection is no new entry).
	before := statsOf(t, ctl("--json", "list"))
	tally := lab.Spread(ctx, client, vipURL, 30, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // counters are published per batch
	after := statsOf(t, ctl("--json", "list"))
	for _, b := range []string{"b0", "b1"} {
		if got := after[b] - before[b]; got != uint64(tally.ByBackend[b]) {
			t.Errorf("ctl list --stats: %d new connections on %s, the client made %d (%v)", got, b, tally.ByBackend[b], tally)
		}
	}
	if stats := ctl("list", "--stats"); !strings.Contains(stats, "InPkts") {
		t.Errorf("ctl list --stats:\n%s", stats)
	}

	load := testnet.StartLoad(ctx, client, vipURL, 4)
	phase := func(name string) {
		t.Helper()
		time.Sleep(500 * time.Millisecond) // traffic after the change, too
		ok, failed, slowest := load.Phase()
		t.Logf("%s: %d requests answered, %d failed, slowest %s", name, ok, failed, slowest)
		if ok == 0 || failed != 0 {
			t.Errorf("%s: %d answered, %d failed; want no failure", name, ok, failed)
		}
	}
	phase("before the changes")

	// ipvsadm -a: a backend added.
	ctl("add-backend", "web", tn.Backends[2].Addr().String(), "--name", "b2")
	waitFor("b2 up", func() bool { return up("web") == 3 })
	phase("b2 added")
	checkConns("b2 added", "")

	// ipvsadm -A and -D: an IPv6 service on the same backends, then gone.
	var b6 []string
	for _, b := range tn.Backends {
		b6 = append(b6, "--backend", b.Addr6().String())
	}
	ctl(append([]string{"add-service", "web6", "--vip", tn.VIP6.String(), "--port", "80", "--scheduler", "rr",
		"--health", "none"}, b6...)...)
	client6 := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	if tally := lab.Spread(ctx, client6, vip6URL, 9, 10*time.Second); tally.Failed != 0 || len(tally.ByBackend) != 3 {
		t.Errorf("through the added IPv6 service: %v", tally)
	}
	phase("web6 added")

	// What the clients saw, as ctl list and ctl conns show it.
	// ctl list --rate while the loop runs: new connections and packets per second.
	rates := ctl("list", "--rate", "--interval", "500ms")
	for _, line := range strings.Split(rates, "\n") {
		if f := strings.Fields(line); len(f) == 7 && f[0] == "TCP" && f[1] == tn.VIP.String()+":80" {
			if cps, _ := strconv.Atoi(f[2]); cps < 100 {
				t.Errorf("ctl list --rate: %d new connections per second under the loop\n%s", cps, rates)
			}
			t.Logf("ctl list --rate:\n%s", rates)
		}
	}
	listing := ctl("list")
	t.Logf("ctl list:\n%s", listing)
	for _, b := range []string{"b0", "b1", "b2"} {
		if want := countOn(conns, b); want > 0 {
			addr := addrOf(t, tn, b) + ":80"
			if active := activeConn(t, listing, addr); active < want {
				t.Errorf("ctl list: %s has ActiveConn %d, %d long-lived connections are on it\n%s", addr, active, want, listing)
			}
		}
	}
	if !strings.Contains(listing, "TCP  "+tn.VIP.String()+":80 maglev") || !strings.Contains(listing, "Route") {
		t.Errorf("ctl list:\n%s", listing)
	}
	var js dataplane.ConnListing
	if err := json.Unmarshal([]byte(ctl("--json", "conns", "--limit", "50000")), &js); err != nil {
		t.Fatal(err)
	}
	workers := map[int]int{}
	for _, c := range js.Conns {
		workers[c.Worker]++
	}
	t.Logf("ctl conns: %d entries (%d matched) from workers %v, tables of %d entries", len(js.Conns), js.Matched, workers, js.Capacity)
	table := ctl("conns", "--service", "web", "--client", tn.Client.Addr().String(), "--limit", "50000")
	t.Logf("ctl conns (first lines):\n%s", strings.Join(strings.SplitN(table, "\n", 6)[:5], "\n"))
	for i, lc := range conns {
		src := lc.c.LocalAddr().String()
		want := addrOf(t, tn, lc.backend) + ":80"
		found := false
		for _, line := range strings.Split(table, "\n") {
			f := strings.Fields(line)
			if len(f) == 6 && f[0] == "TCP" && f[2] == "ESTABLISHED" && f[3] == src && f[5] == want {
				found = true
			}
		}
		if !found {
			t.Errorf("ctl conns: no ESTABLISHED entry %s -> %s for long-lived connection %d\n%s", src, want, i, table)
		}
	}

	// ipvsadm -e then -d: b1 drained, then deleted.
	ctl("edit-backend", "web", "b1", "--weight", "0")
	time.Sleep(time.Second) // the loop's requests on b1 finish
	phase("b1 drained")
	ctl("delete-backend", "web", "b1")
	phase("b1 deleted")
	checkConns("b1 deleted", "b1")
	ctl("delete-service", "web6")
	if _, err := lab.Get(ctx, client6, vip6URL); err == nil {
		t.Error("the deleted IPv6 service still answers")
	}
	phase("web6 deleted")
	load.Stop()

	// Bad input: refused with the file's reason, nothing changes.
	out, err := tn.LB.Run(bin, "ctl", "--socket", sock, "add-backend", "web", "198.18.0.300")
	if err == nil || !strings.Contains(string(out), `"198.18.0.300" is not an IP address`) {
		t.Errorf("bad address: %v\n%s", err, out)
	}

	// ctl save: what xlb run --check accepts, with the changes in it.
	saved := ctl("save")
	spath := filepath.Join(dir, "saved.yaml")
	if err := os.WriteFile(spath, []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "run", "--check", "--config", spath).CombinedOutput(); err != nil {
		t.Errorf("xlb run --check of the saved configuration: %v\n%s\n%s", err, out, saved)
	}
	if !strings.Contains(saved, "name: b2") || strings.Contains(saved, "name: b1") || strings.Contains(saved, "web6") {
		t.Errorf("saved configuration:\n%s", saved)
	}

	// SIGHUP: the file wins, the runtime changes are dropped and the log names them.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload to drop the runtime changes", func() bool {
		return strings.Contains(logs.String(), "runtime changes not in it are dropped")
	})
	waitFor("b0 and b1 up again", func() bool { return up("web") == 2 })
	// By the BACKEND column: a MAC address in the table may well read "b2".
	st := ctl("backends", "web")
	names := map[string]bool{}
	for _, line := range strings.Split(st, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 {
			names[f[1]] = true
		}
	}
	if names["b2"] || !names["b1"] || !names["b0"] {
		t.Errorf("after the reload (backends %v):\n%s", names, st)
	}
	checkConns("after the reload", "b1")
}

// longConn is a long-lived connection to the VIP and the backend it is on.
type longConn struct {
	c       *testnet.HTTPConn
	backend string
}

func countOn(conns []longConn, b string) int {
	n := 0
	for _, c := range conns {
		if c.backend == b {
			n++
		}
	}
	return n
}

func addrOf(t *testing.T, tn *lab.Net, name string) string {
	t.Helper()
	for _, b := range tn.Backends {
		if b.Name == name {
			return b.Addr().String()
		}
	}
	t.Fatalf("no backend %s", name)
	return ""
}

// activeConn reads a destination's ActiveConn from ipvsadm -Ln's layout.
func activeConn(t *testing.T, listing, addr string) int {
	t.Helper()
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "->" && f[1] == addr {
			n, err := strconv.Atoi(f[4])
			if err != nil {
				t.Fatalf("ActiveConn %q in %q", f[4], line)
			}
			return n
		}
	}
	return -1
}

// statsOf returns the Conns counter of every backend of service web, by name.
func statsOf(t *testing.T, js string) map[string]uint64 {
	t.Helper()
	var l control.Listing
	if err := json.Unmarshal([]byte(js), &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, s := range l.Services {
		if s.Name == "web" {
			for _, b := range s.Backends {
				out[b.Name] = b.Stats.Conns
			}
		}
	}
	return out
}
