package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/internal/caps"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// nobody is the unprivileged user the test runs xlb as.
const nobody = 65534

// startAs starts `xlb run` in the LB namespace as uid and gid nobody with
// exactly cs as ambient (so permitted and effective) capabilities. With
// setpriv (util-linux) it also sets what the systemd unit sets: no new
// privileges and a bounding set of cs alone; without, Go's SysProcAttr
// does the uid and the ambient set.
func startAs(t *testing.T, tn *lab.Net, bin, conf string, cs []caps.Cap, setpriv bool) (*exec.Cmd, *testnet.Output, chan error) {
	t.Helper()
	var amb []uintptr
	var names []string
	for _, c := range cs {
		amb = append(amb, uintptr(c.Bit))
		names = append(names, "+"+strings.ToLower(strings.TrimPrefix(c.Name, "CAP_")))
	}
	set := strings.Join(names, ",")
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, AmbientCaps: amb,
		Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if setpriv {
		cmd = exec.Command("setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
			"--no-new-privs", "--bounding-set=-all,"+set, "--inh-caps=-all,"+set, "--ambient-caps=-all,"+set,
			bin, "run", "--config", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	out := &testnet.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := tn.LB.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, out, exited
}

// procStatus returns the value of a field of /proc/PID/status.
func procStatus(pid int, field string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestRunUnprivileged runs the real daemon in a namespace as an
// unprivileged user with only caps.Required as ambient capabilities and
// forwards HTTP through it; then it drops each capability of the set in
// turn and checks that xlb run fails and names the one missing and what
// needs it: the set is the smallest that works (root only; skips otherwise).
func TestRunUnprivileged(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	dir, err := os.MkdirTemp("", "xlb-unpriv-") // readable by nobody, unlike t.TempDir's parent
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "xlb.yaml")
	cfg := fmt.Sprintf("interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n"+
		"    backends: [{address: %s}, {address: %s}]\n    health: {kind: http, path: /healthz, interval: 200ms, timeout: 100ms}\n",
		tn.VIP, tn.Backends[0].Addr(), tn.Backends[1].Addr())
	// The API socket goes in a directory the unprivileged user owns, as systemd's
	// RuntimeDirectory gives the packaged service.
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cfg += fmt.Sprintf("api: {socket: %s}\n", filepath.Join(run, "xlb.sock"))
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The UMEM (16 MiB) must exceed the memlock limit, so that CAP_IPC_LOCK is
	// what makes it work (the usual 8 MiB default; set here in case it is higher).
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur > 8<<20 {
		low := lim
		low.Cur = 8 << 20
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim) })
	}

	_, err = exec.LookPath("setpriv")
	setpriv := err == nil
	if !setpriv {
		t.Log("setpriv (util-linux) not installed: no-new-privs and the bounding set are not applied")
	}
	cmd, out, exited := startAs(t, tn, bin, conf, caps.Required, setpriv)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb run (unprivileged) log:\n%s", out.String())
		}
	})
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: time.Second})
	url := "http://" + tn.VIP.String() + "/"
	deadline := time.Now().Add(15 * time.Second)
	// Both backends up (each backend's transition to up; its check's is logged too), and a
	// request through the VIP answered.
	for backendsUp(out.String()) < 2 || lab.Spread(t.Context(), client, url, 4, 5*time.Second).Failed > 0 {
		select {
		case err := <-exited:
			t.Fatalf("xlb run as uid %d exited: %v", nobody, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no forwarding within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	eff, err := strconv.ParseUint(procStatus(pid, "CapEff"), 16, 64)
	if uid := strings.Fields(procStatus(pid, "Uid")); err != nil || len(uid) != 4 || uid[1] != strconv.Itoa(nobody) ||
		caps.Set(eff) != caps.Of(caps.Required...) {
		t.Fatalf("xlb run: Uid %v, CapEff %x (%v); want euid %d and exactly %v", uid, eff, err, nobody, caps.Of(caps.Required...).Names())
	}
	if bnd, err := strconv.ParseUint(procStatus(pid, "CapBnd"), 16, 64); setpriv &&
		(err != nil || caps.Set(bnd) != caps.Of(caps.Required...) || procStatus(pid, "NoNewPrivs") != "1") {
		t.Errorf("xlb run: CapBnd %x (%v), NoNewPrivs %s; want the five and 1, as the unit sets them", bnd, err, procStatus(pid, "NoNewPrivs"))
	}
	tally := lab.Spread(t.Context(), client, url, 30, 20*time.Second)
	if tally.Failed != 0 || tally.ByBackend["b0"] == 0 || tally.ByBackend["b1"] == 0 {
		t.Errorf("HTTP through the unprivileged xlb: %v", tally)
	}
	t.Logf("uid %d with %v: %v", nobody, caps.Of(caps.Required...).Names(), tally)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("xlb run exited with %v on SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xlb run did not stop on SIGTERM")
	}
	if l, err := tn.LB.Handle().LinkByName("eth0"); err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
		t.Errorf("XDP left on eth0 after a clean exit (%v)", err)
	}

	eachCapabilityNeeded(t, tn, bin, conf)
}

// eachCapabilityNeeded starts xlb run without each capability of the set in
// turn and checks that it fails and names the one missing and what needs it.
func eachCapabilityNeeded(t *testing.T, tn *lab.Net, bin, conf string) {
	for i, c := range caps.Required {
		t.Run("without "+c.Name, func(t *testing.T) {
			less := append(append([]caps.Cap(nil), caps.Required[:i]...), caps.Required[i+1:]...)
			_, out, exited := startAs(t, tn, bin, conf, less, false)
			select {
			case err := <-exited:
				if err == nil {
					t.Fatalf("xlb run succeeded without %s", c.Name)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("xlb run still runs without %s: the capability is not needed", c.Name)
			}
			msg := out.String()
			if !strings.Contains(msg, c.Name+": "+c.Why) || !strings.Contains(msg, caps.ErrMissing.Error()) {
				t.Errorf("the error does not name %s and what needs it:\n%s", c.Name, msg)
			}
			t.Logf("without %s: %s", c.Name, msg[strings.Index(msg, "xlb: "):])
		})
	}
}

// backendsUp counts the backends whose last "backend health changed" line in log says up.
func backendsUp(log string) int {
	up := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="backend health changed"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if name, ok := strings.CutPrefix(f, "backend="); ok {
				up[name] = strings.Contains(line, " to=up")
			}
		}
	}
	n := 0
	for _, u := range up {
		if u {
			n++
		}
	}
	return n
}
