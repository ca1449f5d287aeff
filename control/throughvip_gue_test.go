package control

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2EThroughVIPGUE: a GUE tunnel service's checks go through the VIP inside GUE, as its
// forwarded packets do ("via"), next to a service that checks the backends' own addresses
// ("direct"). The backends decapsulate with the tc program; a backend that stops
// decapsulating GUE goes down in "via" only, and comes back when it decapsulates again. The
// egress program leaves with the controller.
func TestE2EThroughVIPGUE(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true, Decap: true})
	for _, b := range tn.Backends {
		must(t, b.Decap.AddUDPPort(encap.DefaultGUEPort))
	}
	var y strings.Builder
	fmt.Fprintf(&y, "interfaces: [{name: eth0}]\nservices:\n")
	for _, s := range []struct {
		name  string
		port  int
		extra string
	}{{"via", 80, "through_vip: true"}, {"direct", 81, "port: 80"}} {
		fmt.Fprintf(&y, "  - name: %s\n    vip: %s\n    port: %d\n    method: tunnel\n    tunnel_source: %s\n    encap: gue\n    backends:\n",
			s.name, tn.VIP, s.port, tn.LB.Addr())
		for _, be := range tn.Backends {
			fmt.Fprintf(&y, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		fmt.Fprintf(&y, "    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2, %s}\n", s.extra)
	}
	cfg, err := config.Parse("gue.yaml", []byte(y.String()))
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
	state := func(svc, be string) string {
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
		for state(svc, be) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s/%s is %s, want %s", svc, be, state(svc, be), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, svc := range []string{"via", "direct"} {
		for _, be := range tn.Backends {
			wait(svc, be.Name, "up")
		}
	}
	for _, be := range tn.Backends {
		st, err := be.Decap.Stats()
		must(t, err)
		if st.Decap == 0 || st.Error != 0 {
			t.Errorf("%s decapsulated no probe: %+v", be.Name, st)
		}
	}
	// b1 stops decapsulating GUE: its forwarded packets would be lost, and only the check
	// inside GUE sees it.
	be := tn.Backends[1]
	must(t, be.Decap.DelUDPPort(encap.DefaultGUEPort))
	wait("via", be.Name, "down")
	for start := time.Now(); time.Since(start) < time.Second; time.Sleep(50 * time.Millisecond) {
		if got := state("direct", be.Name); got != "up" {
			t.Fatalf("direct check of %s: %s, want up", be.Name, got)
		}
	}
	if got := state("via", tn.Backends[0].Name); got != "up" {
		t.Fatalf("via/%s: %s", tn.Backends[0].Name, got)
	}
	must(t, be.Decap.AddUDPPort(encap.DefaultGUEPort))
	wait("via", be.Name, "up")

	if n := egressFilters(t, tn.LB); n != 1 {
		t.Fatalf("%d probe encapsulation filters on the LB's eth0, want 1", n)
	}
	must(t, c.Close())
	closed = true
	if n := egressFilters(t, tn.LB); n != 0 {
		t.Errorf("%d probe encapsulation filters left after Close", n)
	}
}

// egressFilters counts the probe encapsulation filters on the host's eth0 egress.
func egressFilters(t *testing.T, host *lab.Host) int {
	t.Helper()
	h, err := netlink.NewHandleAt(host.NsHandle())
	must(t, err)
	defer h.Close()
	l, err := h.LinkByName("eth0")
	must(t, err)
	fs, err := h.FilterList(l, netlink.HANDLE_MIN_EGRESS)
	must(t, err)
	n := 0
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "xlb_probe_encap") {
			n++
		}
	}
	return n
}
