package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2EDefence runs the real binary: `xlb run` with an ACL that denies part of the
// client's address pool, `xlb ctl acl` and `xlb ctl drops` showing the hits, `xlb ctl acl
// SERVICE deny=` lifting it, and the mutating ctl commands run as uid 65534: refused
// through the socket (mode 0660, group 65534) without the group and over TCP without a
// token; allowed through the socket with the group.
func TestE2EDefence(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	sock, ctl, logs := startDefenceXLB(t, tn)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := ctl(nil, "--socket", sock, "--json", "services")
		var svcs []control.ServiceStatus
		if err == nil && json.Unmarshal([]byte(out), &svcs) == nil && len(svcs) == 1 && svcs[0].Up == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends not up: %s %v", out, err)
		}
	}
	get := func(src string) error {
		c := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 700 * time.Millisecond,
			LocalAddr: &net.TCPAddr{IP: netip.MustParseAddr(src).AsSlice()}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := lab.Get(ctx, c, fmt.Sprintf("http://%s/", netip.AddrPortFrom(tn.VIP, 80)))
		return err
	}
	if err := get(tn.Client.Addr().String()); err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	if err := get("198.18.64.9"); err == nil {
		t.Fatal("a denied source got an answer")
	}
	out, err := ctl(nil, "--socket", sock, "--json", "acl", "web")
	var hits []dataplane.RuleHits
	if err != nil || json.Unmarshal([]byte(out), &hits) != nil || len(hits) != 1 || !hits[0].Deny ||
		hits[0].Prefix != netip.MustParsePrefix("198.18.64.0/24") || hits[0].Packets == 0 {
		t.Errorf("xlb ctl acl web: %v\n%s", err, out)
	}
	if out, err := ctl(nil, "--socket", sock, "acl", "web"); err != nil || !strings.Contains(out, "198.18.64.0/24") {
		t.Errorf("xlb ctl acl web (table): %v\n%s", err, out)
	}
	out, err = ctl(nil, "--socket", sock, "--json", "drops")
	var d control.Drops
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.Services["web"].ACL == 0 || d.XDP["eth0"]["drop_acl"] == 0 {
		t.Errorf("xlb ctl drops: %v\n%s", err, out)
	}
	if out, err := ctl(nil, "--socket", sock, "acl", "web", "deny="); err != nil || !strings.Contains(out, "0 deny") {
		t.Fatalf("xlb ctl acl web deny=: %v\n%s", err, out)
	}
	if err := get("198.18.64.9"); err != nil {
		t.Errorf("after the acl was emptied: %v", err)
	}

	checkUnprivileged(t, ctl, sock, tn)
	// The daemon's log names who changed what, and what it refused.
	for _, want := range []string{`via=socket uid=65534 gid=65534`, `outcome="refused: no token set"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("xlb run log lacks %s", want)
		}
	}
}

// checkUnprivileged runs the mutating ctl commands as uid 65534: without the socket's
// group through the socket (refused by the kernel) and over TCP without a token (403), and
// with the group through the socket (allowed); only the last one changes a weight.
func checkUnprivileged(t *testing.T, ctl ctlFunc, sock string, tn *lab.Net) {
	t.Helper()
	nobody := &syscall.Credential{Uid: 65534, Gid: 65533, Groups: []uint32{}}
	member := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	for _, c := range []struct {
		name string
		cred *syscall.Credential
		args []string
		want string // "" = success
	}{
		{"socket, not in the group", nobody, []string{"--socket", sock, "drain", "web", tn.Backends[0].Name}, "permission denied"},
		{"tcp on loopback, no token", nobody, []string{"--api", "127.0.0.1:9440", "drain", "web", tn.Backends[0].Name}, "403"},
		{"tcp read", nobody, []string{"--api", "127.0.0.1:9440", "services"}, ""},
		{"socket, in the group", member, []string{"--socket", sock, "drain", "web", tn.Backends[1].Name}, ""},
	} {
		out, err := ctl(c.cred, c.args...)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v\n%s", c.name, err, out)
		case c.want != "" && (err == nil || !strings.Contains(out, c.want)):
			t.Errorf("%s: %v\n%s (want refused: %s)", c.name, err, out, c.want)
		}
	}
	out, err := ctl(nil, "--socket", sock, "--json", "backends", "web")
	var bs []control.BackendStatus
	if err != nil || json.Unmarshal([]byte(out), &bs) != nil || len(bs) != 2 || bs[0].Weight != 100 || bs[1].Weight != 0 {
		t.Errorf("weights after the unprivileged calls (want only the group member's drain): %v\n%s", err, out)
	}
}

// ctlFunc runs `xlb ctl ARGS` in the LB's namespace, as cred when not nil.
type ctlFunc func(cred *syscall.Credential, args ...string) (string, error)

// startDefenceXLB builds the binary where uid 65534 may run it, starts `xlb run` in the LB
// with an ACL denying 198.18.64.0/24 and a socket of group 65534, and returns the socket
// and a ctl runner.
func startDefenceXLB(t *testing.T, tn *lab.Net) (string, ctlFunc, *testnet.Output) {
	t.Helper()
	dir, err := os.MkdirTemp("", "xlb-defence-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // uid 65534 runs the binary from here
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "xlb.sock")
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tn.VIP)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
	}
	b.WriteString("    health: {kind: tcp, interval: 300ms, timeout: 200ms, rise: 1}\n")
	b.WriteString("    acl: {deny: [198.18.64.0/24]}\n")
	fmt.Fprintf(&b, "api: {socket: %s, socket_group: '65534'}\n", sock)
	conf := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testnet.Output{}
	run := exec.Command(bin, "run", "--config", conf)
	run.Stdout, run.Stderr = logs, logs
	if err := tn.LB.Start(run); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run log:\n%s", logs.String())
		}
	})
	ctl := func(cred *syscall.Credential, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"ctl"}, args...)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
		}
		if err := tn.LB.Start(cmd); err != nil {
			return "", err
		}
		err := cmd.Wait()
		return out.String(), err
	}
	return sock, ctl, logs
}
