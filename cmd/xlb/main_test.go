package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
)

type nopPublisher struct{ last *dataplane.Snapshot }

func (p *nopPublisher) Publish(s *dataplane.Snapshot) error { p.last = s; return nil }

type hopResolver struct{}

func (hopResolver) Resolve(context.Context, netip.Addr) (dataplane.NextHop, error) {
	return dataplane.NextHop{IfIndex: 2, SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0, 0, 0, 0, 2}}, nil
}

type noProber struct{}

func (noProber) Add(health.Check) error     { return nil }
func (noProber) Remove(string) error        { return nil }
func (noProber) Replace(health.Check) error { return nil }
func (noProber) Statuses() []health.Status  { return nil }
func (noProber) Close()                     {}

const cfgYAML = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - {name: a, address: 198.18.0.11}
      - {name: b, address: 198.18.0.12}
    health: {kind: none}
api: {listen: "127.0.0.1:9440", token: t0k}
`

// ctlServer runs a controller with fakes behind the real API handler.
func ctlServer(t *testing.T) (*control.Controller, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := startController(t, cfg)
	return c, serveAPI(t, c)
}

// startController starts a controller of cfg with fakes for the data path, the resolver
// and the prober; the test's cleanup closes it.
func startController(t *testing.T, cfg *config.Config) *control.Controller {
	t.Helper()
	c, err := control.New(cfg, control.Options{Publisher: &nopPublisher{}, Resolver: hopResolver{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProber: func(context.Context, health.Options) control.Prober { return noProber{} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveAPI serves c's API over HTTP (token t0k) until the test ends and returns its URL.
func serveAPI(t *testing.T, c *control.Controller) string {
	t.Helper()
	srv := httptest.NewServer(control.NewHandler(c, control.HandlerOptions{Token: "t0k"}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func runXLB(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCtl(t *testing.T) {
	c, url := ctlServer(t)
	ctl := func(args ...string) (int, string, string) {
		return runXLB(append([]string{"ctl", "--api", url, "--token", "t0k"}, args...)...)
	}
	code, out, errs := ctl("services")
	if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "198.19.0.10") {
		t.Fatalf("services: %d %q %q", code, out, errs)
	}
	code, out, _ = ctl("weight", "web", "a", "5")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("weight: %d %q", code, out)
	}
	code, out, _ = ctl("--json", "backends", "web")
	var bs []control.BackendStatus
	if code != 0 || json.Unmarshal([]byte(out), &bs) != nil || len(bs) != 2 || bs[0].Weight != 5 || bs[0].ConfigWeight != 100 {
		t.Fatalf("backends --json: %d %q", code, out)
	}
	if code, _, _ := ctl("drain", "web", "b"); code != 0 {
		t.Fatal("drain failed")
	}
	if code, _, _ := ctl("disable", "web", "a"); code != 0 {
		t.Fatal("disable failed")
	}
	code, out, _ = ctl("backends", "web")
	if code != 0 || !strings.Contains(out, "5 (config 100)") || !strings.Contains(out, "0 (config 100)") {
		t.Fatalf("backends table: %q", out)
	}
	if bs, _ := c.Backends("web"); !bs[0].Disabled || bs[1].Weight != 0 {
		t.Errorf("controller state = %+v", bs)
	}
	if code, _, _ := ctl("enable", "web", "a"); code != 0 {
		t.Fatal("enable failed")
	}
	if code, out, _ := ctl("reload"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %d %q", code, out)
	}
	if code, out, _ := ctl("status"); code != 0 || !strings.Contains(out, "1 applied") {
		t.Fatalf("status: %d %q", code, out)
	}
	// Errors: unknown backend, bad token, bad usage.
	if code, _, errs := ctl("drain", "web", "zz"); code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("unknown backend: %d %q", code, errs)
	}
	if code, _, errs := runXLB("ctl", "--api", url, "--token", "bad", "services"); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("bad token: %d %q", code, errs)
	}
	if code, _, _ := ctl("weight", "web", "a"); code != 2 {
		t.Errorf("missing argument: exit %d, want 2", code)
	}
	if code, _, _ := ctl("weight", "web", "a", "70000"); code != 2 {
		t.Errorf("bad weight: exit %d, want 2", code)
	}
}

func TestRunCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(cfgYAML), 0o600)
	os.WriteFile(bad, []byte(strings.Replace(cfgYAML, "port: 80", "port: 80\n    scheduler: fastest", 1)), 0o600)
	if code, _, errs := runXLB("run", "--check", "--config", good); code != 0 || !strings.Contains(errs, "configuration OK") {
		t.Errorf("good: %d %q", code, errs)
	}
	code, _, errs := runXLB("run", "--check", "--config", bad)
	if code != 1 || !strings.Contains(errs, bad+":6: services[0].scheduler") {
		t.Errorf("bad: %d %q", code, errs)
	}
	if code, _, _ := runXLB("run"); code != 2 {
		t.Errorf("run without --config: exit %d", code)
	}
}

func TestVersionAndBench(t *testing.T) {
	if code, out, _ := runXLB("version"); code != 0 || !strings.HasPrefix(out, "xlb ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errs := runXLB("bench", "--scenario", "nope"); code != 2 || !strings.Contains(errs, "--scenario") {
		t.Errorf("bench --scenario nope: %d %q", code, errs)
	}
	if code, _, _ := runXLB("frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// TestCtlServicesGroup: `ctl services` lists every VIP and port (range) of a service group,
// not just the first, from a real controller's status.
func TestCtlServicesGroup(t *testing.T) {
	y := strings.Replace(cfgYAML, "    vip: 198.19.0.10\n    port: 80\n",
		"    vips: [198.19.0.10, 198.19.0.11]\n    ports: [80, 8000-8099]\n", 1)
	cfg, err := config.Parse("group.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	url := serveAPI(t, startController(t, cfg))
	code, out, errs := runXLB("ctl", "--api", url, "--token", "t0k", "services")
	if code != 0 || !strings.Contains(out, "198.19.0.10,198.19.0.11") || !strings.Contains(out, "80,8000-8099") ||
		strings.Count(out, "\n") != 2 {
		t.Fatalf("services of a group (one line under the header): %d %q %q", code, out, errs)
	}
}
