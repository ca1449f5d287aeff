package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestPreflightBinary runs `xlb preflight --config` in the LB namespace of
// a test topology: fit (exit 0) with native XDP passing and zero copy
// warning on veth; then, with a DR backend that answers ARP for the VIP,
// not fit (exit 1) with the fix on its line (root only; skips otherwise).
func TestPreflightBinary(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true, NoHTTP: true})
	dir := t.TempDir()
	bin := filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "xlb.yaml")
	cfg := fmt.Sprintf("interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    method: dr\n"+
		"    backends: [{address: %s}, {address: %s}]\n", tn.VIP, tn.Backends[0].Addr(), tn.Backends[1].Addr())
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	preflight := func(flags ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"preflight", "--config", conf, "--netns", "/var/run/netns/xlb-" + tn.ID + "-*"}, flags...)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := tn.LB.Start(cmd); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}

	out, code := preflight()
	t.Logf("xlb preflight:\n%s", out)
	for _, want := range []string{
		"pass  eth0 xdp ", "warn  eth0 zero-copy ", "pass  eth0 driver            veth",
		"pass  dr backend " + tn.Backends[0].Addr().String(), "pass  dr backend " + tn.Backends[1].Addr().String(),
		"\nfit: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("exit status %d on a fit host, want 0", code)
	}
	out, code = preflight("--no-probe", "--json")
	var rep struct {
		Fit    bool
		Checks []struct{ Check, Status, Detail, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Fit || len(rep.Checks) < 15 ||
		rep.Checks[0].Check != "kernel" || rep.Checks[0].Status != "pass" {
		t.Errorf("--json: %v, exit %d:\n%s", err, code, out)
	}

	// The kernel takes the larger of all and eth0: both must say 0 for the backend to answer.
	if err := tn.Backends[1].Sysctls(map[string]string{"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"}); err != nil {
		t.Fatal(err)
	}
	out, code = preflight()
	line := "fail  dr backend " + tn.Backends[1].Addr().String()
	if code != 1 || !strings.Contains(out, line) || !strings.Contains(out, "fix: sysctl -w net.ipv4.conf.all.arp_ignore=1") ||
		!strings.Contains(out, "NOT fit") {
		t.Errorf("exit status %d with a backend that answers ARP, want 1 and a %q line with its fix:\n%s", code, line, out)
	}
}
