package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serveOn serves h on ln as xlb run does (APIConnContext) until the test ends.
func serveOn(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() { cancel(); <-done })
}

// worldDir returns a fresh directory everybody may enter (for the unprivileged child).
func worldDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "xlb-api-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	must(t, os.Chmod(d, 0o755))
	return d
}

func tcpListener(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	return ln, "http://" + ln.Addr().String()
}

// TestAPISocketAndTCP: the unix socket may change the balancer; TCP without a token reads
// only; with a token every TCP request needs it, and failures are counted and slowed down.
func TestAPISocketAndTCP(t *testing.T) {
	r := newRig(t, twoSvc)
	ctx := context.Background()
	sock := filepath.Join(worldDir(t), "run", "xlb.sock")
	sl, err := ListenSocket(sock, 65534)
	must(t, err)
	fi, err := os.Stat(sock)
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != 65534 || st.Uid != uint32(os.Getuid()) {
		t.Fatalf("socket mode %v uid %d gid %d, want 0660 %d 65534", fi.Mode().Perm(), st.Uid, st.Gid, os.Getuid())
	}
	if _, err := ListenSocket(sock, -1); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("second listener on a live socket: %v, want ErrSocketInUse", err)
	}
	h := NewHandler(r.c, HandlerOptions{})
	serveOn(t, sl, h)
	tl, base := tcpListener(t)
	serveOn(t, tl, h)

	must(t, (&Client{Socket: sock}).Drain(ctx, "web", "a"))
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Fatalf("drain over the socket: weight %d", w)
	}
	tcp := &Client{Base: base}
	if _, err := tcp.Services(ctx); err != nil {
		t.Errorf("read over tcp: %v", err)
	}
	var ae *APIError
	if err := tcp.Enable(ctx, "web", "a"); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("change over tcp without a token: %v, want 403", err)
	}
	if err := tcp.SetWeight(ctx, "web", "a", 9); err == nil || r.backend("web", "a").Weight != 0 {
		t.Errorf("weight over tcp without a token applied: %v", err)
	}

	acc := NewAccess("s3cret-token")
	ht := NewHandler(r.c, HandlerOptions{Access: acc})
	tl2, base2 := tcpListener(t)
	serveOn(t, tl2, ht)
	start := time.Now()
	for _, tok := range []string{"", "wrong"} {
		if _, err := (&Client{Base: base2, Token: tok}).Services(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("token %q: %v, want 401", tok, err)
		}
	}
	// The second failure from the same address waits twice the first's delay.
	if took := time.Since(start); took < 3*MinAuthDelay || acc.AuthFailures() != 2 {
		t.Errorf("two failures took %v (want >= %v), counted %d", took, 3*MinAuthDelay, acc.AuthFailures())
	}
	must(t, (&Client{Base: base2, Token: "s3cret-token"}).SetWeight(ctx, "web", "a", 9))
	if w := r.backend("web", "a").Weight; w != 9 {
		t.Errorf("weight with the token: %d", w)
	}
	sl.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Close: %v", err)
	}
}

// childEnv names the action TestAPIChild performs when the test binary is re-run as
// another user.
const childEnv = "XLB_API_CHILD"

// TestAPIChild is the unprivileged side of TestAPIUnprivileged: it runs only in the child.
func TestAPIChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("only in the child of TestAPIUnprivileged")
	}
	kind, target, _ := strings.Cut(spec, " ")
	cl := &Client{Base: target}
	if kind == "socket" {
		cl = &Client{Socket: target}
	}
	err := cl.Drain(context.Background(), "web", "b")
	fmt.Printf("RESULT uid=%d gid=%d %s: %v\n", os.Getuid(), os.Getgid(), kind, err)
}

// TestAPIUnprivileged runs the mutating calls as uid 65534: through the socket (group
// 65534 may use it) without the group they are refused by the kernel, with it they
// pass; over TCP on loopback they are refused without a token.
func TestAPIUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	r := newRig(t, twoSvc)
	dir := worldDir(t)
	bin := filepath.Join(dir, "control.test")
	data, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	sock := filepath.Join(dir, "xlb.sock")
	sl, err := ListenSocket(sock, 65534)
	must(t, err)
	h := NewHandler(r.c, HandlerOptions{})
	serveOn(t, sl, h)
	tl, base := tcpListener(t)
	serveOn(t, tl, h)

	child := func(gid uint32, spec string) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^TestAPIChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+spec)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: gid, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "RESULT ") {
				return l
			}
		}
		t.Fatalf("child said nothing:\n%s", out)
		return ""
	}
	for _, c := range []struct {
		gid  uint32
		spec string
		want string
	}{
		{65533, "socket " + sock, "permission denied"},
		{65533, "tcp " + base, "403"},
		{65534, "socket " + sock, "socket: <nil>"},
	} {
		got := child(c.gid, c.spec)
		t.Log(got)
		if !strings.Contains(got, "uid=65534") || !strings.Contains(got, c.want) {
			t.Errorf("gid %d %s: %q, want %q", c.gid, c.spec, got, c.want)
		}
		if drained := r.backend("web", "b").Weight == 0; drained != strings.Contains(c.want, "<nil>") {
			t.Errorf("gid %d %s: backend b drained %v", c.gid, c.spec, drained)
		}
	}
}

// TestAPIAuthWaitingBounded: at most maxAuthWaiting failed requests are held back at
// once; the next failure is answered (401) without waiting.
func TestAPIAuthWaitingBounded(t *testing.T) {
	r := newRig(t, twoSvc)
	acc := NewAccess("right")
	acc.MinDelay, acc.MaxDelay = time.Hour, time.Hour
	tl, base := tcpListener(t)
	serveOn(t, tl, NewHandler(r.c, HandlerOptions{Access: acc}))
	ctx, cancel := context.WithCancel(context.Background())
	var held sync.WaitGroup
	for range maxAuthWaiting {
		held.Add(1)
		go func() {
			defer held.Done()
			_, _ = (&Client{Base: base, Token: "wrong"}).Services(ctx)
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); len(acc.waiting) < maxAuthWaiting; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests held back, want %d", len(acc.waiting), maxAuthWaiting)
		}
	}
	var ae *APIError
	if _, err := (&Client{Base: base, Token: "wrong"}).Services(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("failure beyond the bound: %v, want an immediate 401", err)
	}
	if n := acc.AuthFailures(); n != maxAuthWaiting+1 {
		t.Errorf("counted %d failures, want %d", n, maxAuthWaiting+1)
	}
	cancel()
	held.Wait()
}
