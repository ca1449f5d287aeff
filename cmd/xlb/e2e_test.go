package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2EBinary runs the real `xlb run` binary in the LB's namespace,
// drives it with `xlb ctl`, reloads it with SIGHUP (a bad file first) and
// stops it with SIGTERM (root only; skips otherwise).
func TestE2EBinary(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, DisableIPv6: true})
	dir := t.TempDir()
	bin := filepath.Join(dir, "xlb")
	sock := filepath.Join(dir, "xlb.sock")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := func(n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tn.VIP)
		for _, be := range tn.Backends[:n] {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		b.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 100ms}\n")
		fmt.Fprintf(&b, "api: {socket: %s}\n", sock)
		return b.String()
	}
	path := filepath.Join(dir, "xlb.yaml")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(path, []byte(conf(2)), 0o600))

	logs := &testnet.Output{}
	cmd := exec.Command(bin, "run", "--config", path, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logs, logs
	must(tn.LB.Start(cmd))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("xlb run log:\n%s", logs.String())
		}
	})
	ctl := func(args ...string) (string, error) {
		out, err := tn.LB.Run(bin, append([]string{"ctl", "--socket", sock}, args...)...)
		return string(out), err
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	active := func() int {
		out, err := ctl("--json", "services")
		var svcs []control.ServiceStatus
		if err != nil || json.Unmarshal([]byte(out), &svcs) != nil || len(svcs) != 1 {
			return -1
		}
		return svcs[0].Up
	}
	upCount := func(want int) func() bool {
		return func() bool { return active() == want }
	}
	waitFor("two backends up", upCount(2))

	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	ctx := context.Background()
	tally := lab.Spread(ctx, client, url, 40, 20*time.Second)
	if tally.Failed != 0 || tally.ByBackend["b0"] == 0 || tally.ByBackend["b1"] == 0 {
		t.Fatalf("through xlb: %v", tally)
	}

	// Drain b0: no new flows go to it.
	if out, err := ctl("drain", "web", "b0"); err != nil {
		t.Fatalf("ctl drain: %v %s", err, out)
	}
	tally = lab.Spread(ctx, client, url, 20, 20*time.Second)
	if tally.Failed != 0 || tally.ByBackend["b0"] != 0 {
		t.Errorf("after drain: %v", tally)
	}

	// A bad file on SIGHUP is refused; the old config keeps running.
	must(os.WriteFile(path, []byte(strings.Replace(conf(3), "port: 80", "port: eighty", 1)), 0o600))
	must(cmd.Process.Signal(syscall.SIGHUP))
	waitFor("the refused reload in the log", func() bool {
		return strings.Contains(logs.String(), "reload refused") && strings.Contains(logs.String(), path+":5:")
	})
	if n := active(); n != 1 {
		t.Errorf("after a bad reload: %d backends active, want 1 (b1; b0 drained)", n)
	}
	// A good one adds b2.
	must(os.WriteFile(path, []byte(conf(3)), 0o600))
	must(cmd.Process.Signal(syscall.SIGHUP))
	waitFor("b2 added and up (b0 stays drained)", upCount(2))
	out, err := ctl("backends", "web")
	if err != nil || !strings.Contains(out, "b2") || !strings.Contains(out, "0 (config 100)") {
		t.Errorf("backends after reload: %v\n%s", err, out)
	}
	if !strings.Contains(logs.String(), "xdp_mode=") {
		t.Error("the log does not say which XDP mode is in effect")
	}

	// SIGTERM: clean exit, XDP detached.
	must(cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("xlb run exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xlb run did not stop on SIGTERM")
	}
	must(tn.LB.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return fmt.Errorf("XDP program still attached to eth0 after exit")
		}
		return nil
	}))
}
