package control

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

const severalChecks = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - {name: a, address: 198.18.0.11}
      - name: b
        address: 198.18.0.12
        health: {kind: none}
      - name: c
        address: 198.18.0.13
        health: {kind: udp, port: 53, payload: ping}
    health:
      interval: 1s
      checks:
        - {kind: http, path: /healthz}
        - {kind: exec, command: [/usr/local/bin/check, "{address}", "{port}"], dynamic_weight: true}
`

func TestSeveralChecksAllMustPass(t *testing.T) {
	r := newRig(t, severalChecks)
	want := []string{"web/a#1", "web/a#2", "web/c"}
	if got := r.prober.ids(); !slices.Equal(got, want) {
		t.Fatalf("checks = %v, want %v", got, want)
	}
	r.prober.mu.Lock()
	exec := r.prober.checks["web/a#2"]
	r.prober.mu.Unlock()
	if got := exec.Checker.String(); got != "exec /usr/local/bin/check 198.18.0.11 80" {
		t.Errorf("exec check = %q", got)
	}
	if exec.Interval != time.Second {
		t.Errorf("exec check interval %v, want the block's 1s", exec.Interval)
	}
	if !r.backend("web", "b").Up {
		t.Error("b (kind none) not up")
	}
	r.prober.fire("web/a#1", health.StateUp)
	if r.backend("web", "a").Up {
		t.Fatal("a up with one of its two checks still unknown")
	}
	r.prober.fire("web/a#2", health.StateUp)
	if !r.backend("web", "a").Up {
		t.Fatal("a not up with both checks up")
	}
	r.prober.fire("web/a#2", health.StateDown)
	if r.backend("web", "a").Up {
		t.Fatal("a still up with a check down")
	}
	bs, err := r.c.Backends("web")
	must(t, err)
	if !strings.Contains(bs[0].Reason, "web/a#2") || !strings.Contains(bs[0].Check, "; ") {
		t.Errorf("status of a: reason %q, check %q", bs[0].Reason, bs[0].Check)
	}
	r.prober.fire("web/a#2", health.StateUp)
	if !r.backend("web", "a").Up {
		t.Fatal("a not up again")
	}

	// A reload that changes one check replaces only that one and keeps a up; one that
	// drops a check removes it.
	changed := strings.Replace(severalChecks, "path: /healthz", "path: /ready", 1)
	must(t, r.c.Reload(r.parse(changed)))
	if !r.backend("web", "a").Up {
		t.Error("a went down on a reload that changed one of its checks")
	}
	one := strings.Replace(changed, `        - {kind: exec, command: [/usr/local/bin/check, "{address}", "{port}"], dynamic_weight: true}
`, "", 1)
	must(t, r.c.Reload(r.parse(one)))
	if got := r.prober.ids(); !slices.Equal(got, []string{"web/a", "web/c"}) {
		t.Errorf("checks after dropping one = %v", got)
	}
}

func TestDynamicWeight(t *testing.T) {
	r := newRig(t, severalChecks)
	r.prober.fire("web/a#1", health.StateUp)
	r.prober.fire("web/a#2", health.StateUp)
	r.prober.opts.OnResult("web/a#2", health.Result{OK: true, Weight: 7, HasWeight: true})
	if w := r.backend("web", "a").Weight; w != 7 {
		t.Fatalf("weight after exit status 9 = %d, want 7", w)
	}
	must(t, r.c.SetWeight("web", "a", 30))
	r.prober.opts.OnResult("web/a#2", health.Result{OK: true, Weight: 2, HasWeight: true})
	if w := r.backend("web", "a").Weight; w != 30 {
		t.Errorf("the API's weight 30 was overridden by the check: %d", w)
	}
}

// TestRealExecChecks runs a controller with the real prober and two exec checks per
// backend, each passing while its file exists: the backend is in the published snapshot
// as up only while both do.
func TestRealExecChecks(t *testing.T) {
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	cfg, err := config.Parse("test.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{name: a, address: 198.18.0.11}]
    health:
      interval: 100ms
      timeout: 100ms
      rise: 1
      fall: 1
      checks:
        - {kind: exec, command: [test, -e, `+f1+`]}
        - {kind: exec, command: ["test -e `+f2+`"], shell: true}
`))
	must(t, err)
	pub := &fakePublisher{}
	c, err := New(cfg, Options{Publisher: pub, Resolver: &fakeResolver{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	must(t, c.Start(context.Background()))
	t.Cleanup(func() { c.Close() })
	up := func() bool {
		s := pub.last()
		return s != nil && s.Service(0).Sched.Backend(0).Up
	}
	waitUntil := func(what string, want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for up() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: backend up = %v after 5s", what, !want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	must(t, os.WriteFile(f1, nil, 0o600))
	time.Sleep(300 * time.Millisecond)
	if up() {
		t.Fatal("up with the second check failing")
	}
	must(t, os.WriteFile(f2, nil, 0o600))
	waitUntil("both files", true)
	must(t, os.Remove(f1))
	waitUntil("first file gone", false)
	must(t, os.WriteFile(f1, nil, 0o600))
	waitUntil("first file back", true)
}

// vipRouter is a fake resolver that records the through-VIP routes it is given.
type vipRouter struct {
	fakeResolver
	mu     sync.Mutex
	routes []VIPRoute
}

func (r *vipRouter) SetThroughVIP(routes []VIPRoute) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = slices.Clone(routes)
	return nil
}

// TestThroughVIPInChecks: a check of a list that goes through the VIP gets its backend's
// policy route, as a single check does.
func TestThroughVIPInChecks(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{name: a, address: 198.18.0.11}]
    health:
      checks:
        - {kind: tcp, through_vip: true}
        - {kind: icmp}
`))
	must(t, err)
	res := &vipRouter{fakeResolver: fakeResolver{fail: map[netip.Addr]bool{}}}
	c, err := New(cfg, Options{Publisher: &fakePublisher{}, Resolver: res, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProber: func(ctx context.Context, o health.Options) Prober {
			return &fakeProber{opts: o, checks: map[string]health.Check{}}
		}})
	must(t, err)
	must(t, c.Start(context.Background()))
	t.Cleanup(func() { c.Close() })
	waitFor(t, "through-VIP route", func() bool {
		res.mu.Lock()
		defer res.mu.Unlock()
		return len(res.routes) == 1 && res.routes[0].VIP == netip.MustParseAddr("198.19.0.10") &&
			res.routes[0].Backend == netip.MustParseAddr("198.18.0.11")
	})
}

// TestCheckerKinds: each kind's config fields reach its checker.
func TestCheckerKinds(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 443
    backends: [{name: a, address: 198.18.0.11}]
    health:
      checks:
        - {kind: tls, server_name: www.test, min_expiry: 48h, path: /ready, expect_status: 204}
        - {kind: dns, port: 53, query: www.test, query_type: MX, expect_rcode: NXDOMAIN, expect_answers: [x]}
        - {kind: udp, port: 7, payload: ping, expect: pong}
        - {kind: smtp, port: 25, helo: lb.test}
        - {kind: exec, command: [check, "{address}", "{port}"], user: nobody, env: [A=b], dynamic_weight: true}
`))
	must(t, err)
	s := &cfg.Services[0]
	chks, _, err := checksFor(s, &s.Backends[0], "web/a", 1)
	must(t, err)
	tl := chks[0].Checker.(*health.TLS)
	if tl.ServerName != "www.test" || tl.MinExpiry != 48*time.Hour || tl.HTTP == nil || tl.HTTP.Path != "/ready" || tl.HTTP.ExpectStatus != 204 {
		t.Errorf("tls: %+v", tl)
	}
	if d := chks[1].Checker.(*health.DNS); d.Name != "www.test" || d.Type != 15 || d.Rcode != 3 || d.Target.Port() != 53 || len(d.Answers) != 1 {
		t.Errorf("dns: %+v", d)
	}
	if u := chks[2].Checker.(*health.UDP); string(u.Payload) != "ping" || string(u.Expect) != "pong" || u.Target.Port() != 7 {
		t.Errorf("udp: %+v", u)
	}
	if m := chks[3].Checker.(*health.SMTP); m.Helo != "lb.test" || m.Target.Port() != 25 {
		t.Errorf("smtp: %+v", m)
	}
	x := chks[4].Checker.(*health.Exec)
	if strings.Join(x.Command, " ") != "check 198.18.0.11 443" || x.User != "nobody" || !x.DynamicWeight ||
		!slices.Contains(x.Env, "A=b") || !slices.Contains(x.Env, "XLB_BACKEND_ADDRESS=198.18.0.11") {
		t.Errorf("exec: %+v", x)
	}
}
