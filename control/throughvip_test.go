package control

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

func TestThroughVIPValidation(t *testing.T) {
	for _, c := range []struct {
		method, kind, want string
	}{
		{"dr", "http", ""},
		{"tunnel", "http", ""},
		{"nat", "tcp", "through_vip needs method dr or tunnel"},
		{"dr", "none", "kind none runs no check"},
	} {
		y := fmt.Sprintf("interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: 198.18.1.100\n    port: 80\n    method: %s\n", c.method)
		if c.method == "tunnel" {
			y += "    tunnel_source: 198.18.0.2\n"
		}
		y += fmt.Sprintf("    health: {kind: %s, through_vip: true}\n    backends:\n      - {name: b0, address: 198.18.0.11}\n", c.kind)
		_, err := config.Parse("tv.yaml", []byte(y))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s/%s: %v", c.method, c.kind, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tv.yaml:")):
			t.Errorf("%s/%s: %v, want an error with file:line saying %q", c.method, c.kind, err, c.want)
		}
	}
}

// TestE2EThroughVIP: two services on the VIP check the same dr backends, "via" through the
// VIP and "direct" on the backends' own addresses. A backend that loses the VIP on its lo
// (it would drop every forwarded packet) goes down in "via" and stays up in "direct". The
// policy routes are removed when the controller closes.
func TestE2EThroughVIP(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n")
	for _, s := range []struct {
		name  string
		port  int
		extra string
	}{{"via", 80, "through_vip: true"}, {"direct", 81, "port: 80"}} {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n    port: %d\n    backends:\n", s.name, tn.VIP, s.port)
		for _, be := range tn.Backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		fmt.Fprintf(&b, "    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2, %s}\n", s.extra)
	}
	cfg, err := config.Parse("tv.yaml", []byte(b.String()))
	must(t, err)
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	c, err := New(cfg, Options{Publisher: &fakePublisher{}, Resolver: NewKernelResolverIn(tn.LB.NsHandle()),
		HealthNetns: health.InNetns(tn.LB.Path()),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, c.Start(ctx))
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	health := func(svc, be string) string {
		bs, err := c.Backends(svc)
		must(t, err)
		for _, b := range bs {
			if b.Name == be {
				return b.Health
			}
		}
		t.Fatalf("no backend %s in %s", be, svc)
		return ""
	}
	wait := func(svc, be, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for health(svc, be) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s/%s is %s, want %s", svc, be, health(svc, be), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, svc := range []string{"via", "direct"} {
		for _, be := range tn.Backends {
			wait(svc, be.Name, "up")
		}
	}
	// rules counts the marks' rules and says where "lookup local" is.
	rules := func() (n, localPref int) {
		h, err := netlink.NewHandleAt(tn.LB.NsHandle())
		must(t, err)
		defer h.Close()
		rs, err := h.RuleList(unix.AF_INET)
		must(t, err)
		localPref = -1
		for _, r := range rs {
			if uint32(r.Mark)&^markMask == markBase {
				n++
			}
			if r.Table == unix.RT_TABLE_LOCAL {
				localPref = r.Priority
			}
		}
		return n, localPref
	}
	// The LB owns the VIP (on eth0): "lookup local" moves after the marks' rules.
	if n, lp := rules(); n != 2 || lp != 100 {
		t.Fatalf("%d mark rules, local rule at %d: want 2, after them", n, lp)
	}

	// b1 loses its VIP: forwarded packets would be dropped; only the check through the VIP sees it.
	be := tn.Backends[1]
	must(t, be.DelAddr("lo", netip.PrefixFrom(tn.VIP, 32)))
	wait("via", be.Name, "down")
	start := time.Now()
	for time.Since(start) < time.Second {
		if got := health("direct", be.Name); got != "up" {
			t.Fatalf("direct check of %s: %s, want up (its own address answers)", be.Name, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := health("via", tn.Backends[0].Name); got != "up" {
		t.Fatalf("via/%s: %s", tn.Backends[0].Name, got)
	}
	must(t, be.AddAddr("lo", netip.PrefixFrom(tn.VIP, 32)))
	wait("via", be.Name, "up")

	must(t, c.Close())
	closed = true
	if n, lp := rules(); n != 0 || lp != 0 {
		t.Errorf("after Close: %d mark rules left, local rule at %d (want 0)", n, lp)
	}
}
