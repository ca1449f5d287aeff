package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestExecExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       *Exec
		want    error
		weight  uint32
		hasW    bool
		errText string
	}{
		{name: "exit 0", c: &Exec{Command: sh("exit 0")}},
		{name: "exit 1", c: &Exec{Command: sh("echo first; echo 'backend sick' >&2; exit 1")}, want: ErrExit, errText: `"backend sick"`},
		{name: "exit 12 static", c: &Exec{Command: sh("exit 12")}, want: ErrExit, errText: "exit status 12"},
		{name: "exit 12 dynamic", c: &Exec{Command: sh("exit 12"), DynamicWeight: true}, weight: 10, hasW: true},
		{name: "exit 2 dynamic", c: &Exec{Command: sh("exit 2"), DynamicWeight: true}, weight: 0, hasW: true},
		{name: "exit 255 dynamic", c: &Exec{Command: sh("exit 255"), DynamicWeight: true}, weight: 253, hasW: true},
		{name: "exit 1 dynamic", c: &Exec{Command: sh("exit 1"), DynamicWeight: true}, want: ErrExit},
		{name: "exit 0 dynamic", c: &Exec{Command: sh("exit 0"), DynamicWeight: true}},
		{name: "signal", c: &Exec{Command: sh("kill -TERM $$")}, want: ErrExit, errText: "terminated"},
		{name: "path lookup, no shell", c: &Exec{Command: []string{"true"}}},
		{name: "no shell: arguments stay words", c: &Exec{Command: []string{"test", "a b", "=", "a b"}}},
		{name: "not found", c: &Exec{Command: []string{"xlb-no-such-program"}}, want: ErrConfig},
		{name: "no command", c: &Exec{}, want: ErrConfig},
		{name: "minimal env", c: &Exec{Command: sh(`[ "$PATH" = "` + ExecPath + `" ] && [ -z "$HOME" ] && [ "$X" = y ] && [ "$(pwd)" = / ]`), Env: []string{"X=y"}}},
		{name: "env PATH", c: &Exec{Command: sh(`[ "$PATH" = /bin ]`), Env: []string{"PATH=/bin"}}},
		{name: "stdin is empty", c: &Exec{Command: sh(`[ -z "$(cat)" ]`)}},
	} {
		rep, err := tc.c.Check(ctxTimeout(t, testTimeout))
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.errText):
			t.Errorf("%s: %v, want %q in it", tc.name, err, tc.errText)
		case rep.HasWeight != tc.hasW || rep.Weight != tc.weight:
			t.Errorf("%s: report %+v, want weight %d (%v)", tc.name, rep, tc.weight, tc.hasW)
		}
	}
}

func TestExecOutputBounded(t *testing.T) {
	c := &Exec{Command: sh("head -c 10000000 /dev/zero | tr '\\0' x; echo; echo LAST; exit 1"), MaxOutput: 100}
	_, err := c.Check(ctxTimeout(t, testTimeout))
	if !errors.Is(err, ErrExit) || len(err.Error()) > 400 {
		t.Fatalf("%d bytes of error: %.400v", len(err.Error()), err)
	}
	w := &capped{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatal(n, err)
		}
	}
	if w.buf.String() != "abcde" || w.dropped != 5 {
		t.Fatalf("capped kept %q, dropped %d", w.buf.String(), w.dropped)
	}
}

// markedProcs lists the live processes whose environment holds mark.
func markedProcs(t *testing.T, mark string) []string {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var live []string
	for _, d := range dirs {
		env, err := os.ReadFile(d + "/environ")
		if err != nil || !bytes.Contains(env, []byte(mark)) {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		live = append(live, filepath.Base(d))
	}
	return live
}

func newMark(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "XLB_EXEC_TEST=" + hex.EncodeToString(b[:])
}

// waitNoneLeft waits (bounded) until no process carries mark.
func waitNoneLeft(t *testing.T, mark string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := markedProcs(t, mark)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the check still alive: %v", len(left), left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUserGone waits (bounded) until uid has no process, zombies included: the orphans of a
// killed bomb are reaped by PID 1, and until then they count against RLIMIT_NPROC.
func waitUserGone(t *testing.T, uid uint32) {
	t.Helper()
	start := time.Now()
	for {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		n := 0
		for _, d := range dirs {
			var st unix.Stat_t
			if unix.Stat(d, &st) == nil && st.Uid == uid {
				n++
			}
		}
		if n == 0 {
			t.Logf("uid %d had no process left after %v", uid, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("uid %d still has %d processes (zombies not reaped by PID 1?)", uid, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecTimeoutKillsGroup: a script that hangs with children (one in the background
// holding the output pipe) is killed as a group at the timeout, and the probe returns.
func TestExecTimeoutKillsGroup(t *testing.T) {
	mark := newMark(t)
	c := &Exec{Command: sh("sleep 1000 & sleep 1000 & while :; do sleep 1; done"), Env: []string{mark}}
	start := time.Now()
	_, err := c.Check(ctxTimeout(t, 300*time.Millisecond))
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("hanging script: %v, want ErrTimeout", err)
	}
	if took > 300*time.Millisecond+execWaitDelay+allowance {
		t.Errorf("probe returned after %v", took)
	}
	waitNoneLeft(t, mark)

	// A script that exits at once but leaves a child behind: the child is killed too.
	c = &Exec{Command: sh("sleep 1000 & exit 0"), Env: []string{mark}}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatal(err)
	}
	waitNoneLeft(t, mark)
}

// TestExecForkBomb runs a fork bomb as user nobody. Its process count is capped by
// RLIMIT_NPROC (set on the test process, inherited by the bomb; root's own processes ignore
// it) so that the shared test machine keeps its process IDs. The probe must still return at
// its timeout and leave no process of the bomb alive.
func TestExecForkBomb(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the bomb as user nobody")
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: 64, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NPROC, &old) })
	mark := newMark(t)
	bomb := "b() { b | b & }; b"
	c := &Exec{Command: []string{"/bin/bash", "-c", bomb + "; sleep 1000"}, User: "nobody", Env: []string{mark}}
	for i := range 2 {
		waitUserGone(t, 65534)
		peak, stop := make(chan int), make(chan struct{})
		go func() { // the bomb's size, sampled while it runs
			n := 0
			for {
				select {
				case <-stop:
					peak <- n
					return
				case <-time.After(50 * time.Millisecond):
					n = max(n, len(markedProcs(t, mark)))
				}
			}
		}()
		start := time.Now()
		_, err := c.Check(ctxTimeout(t, 500*time.Millisecond))
		took := time.Since(start)
		close(stop)
		n := <-peak
		t.Logf("run %d: %v after %v; the bomb reached %d processes", i, err, took, n)
		if n < 32 {
			t.Errorf("the bomb reached only %d processes: not a fork bomb", n)
		}
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("fork bomb: %v, want ErrTimeout", err)
		}
		if took > 500*time.Millisecond+execWaitDelay+time.Second {
			t.Errorf("probe returned after %v", took)
		}
		waitNoneLeft(t, mark)
	}
	// A bomb whose script exits at once: the exit status counts, and the kill that follows
	// the exit takes the bomb down.
	c = &Exec{Command: []string{"/bin/bash", "-c", bomb + "; exit 0"}, User: "nobody", Env: []string{mark}}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatal(err)
	}
	waitNoneLeft(t, mark)
}

// TestNetnsExecHangingScript: an exec check (a bash script that connects to the backend in
// the other namespace) follows the real backend, and once the script starts to hang the
// backend goes down within Interval*Fall + Timeout, with no process of the script left.
func TestNetnsExecHangingScript(t *testing.T) {
	skipUnlessRoot(t)
	p := newPair(t)
	target := netip.AddrPortFrom(beAddr.Addr(), 8080)
	be := p.startBackend(t, target.String())
	flag := filepath.Join(t.TempDir(), "hang")
	mark := newMark(t)
	script := fmt.Sprintf(`[ -e %s ] && while :; do sleep 1; done
exec 3<>/dev/tcp/%s/%d && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q '^ok' <&3`,
		flag, target.Addr(), target.Port())
	const interval, timeout, rise, fall = 200 * time.Millisecond, 100 * time.Millisecond, 2, 3
	tr := newTransitions("exec")
	m := NewMonitor(context.Background(), Options{OnTransition: tr.notify, Netns: p.probeRun})
	defer m.Close()
	err := m.Add(Check{ID: "exec", Checker: &Exec{Command: []string{"/bin/bash", "-c", script}, Env: []string{mark}},
		Interval: interval, Timeout: timeout, Rise: rise, Fall: fall})
	if err != nil {
		t.Fatal(err)
	}
	tr.wait(t, "exec", StateUp, 2*interval+timeout+allowance)
	be.kill()
	tr.wait(t, "exec", StateDown, 10*interval*fall)
	p.startBackend(t, target.String())
	tr.wait(t, "exec", StateUp, 10*interval*rise)

	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hung := time.Now()
	x := tr.wait(t, "exec", StateDown, 10*interval*fall)
	bound := interval*fall + timeout
	d := x.Time.Sub(hung)
	t.Logf("hanging script: down after %v (bound %v): %s", d, bound, x.Reason)
	if d > bound+execWaitDelay+allowance {
		t.Errorf("down after %v, bound %v", d, bound)
	}
	if !strings.Contains(x.Reason, "timed out") {
		t.Errorf("reason %q, want a timeout", x.Reason)
	}
	m.Close()
	waitNoneLeft(t, mark)
}
