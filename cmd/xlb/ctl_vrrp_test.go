package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/ha"
)

// fakeVRRP is a VRRP router that is master until demoted.
type fakeVRRP struct {
	mu      sync.Mutex
	demoted bool
}

func (f *fakeVRRP) VRRPStatus() control.VRRPStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := control.VRRPStatus{VIPs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}, Forwarding: true,
		Status: ha.Status{Interface: "eth0", VRID: 51, Priority: 200,
			State: ha.Master, Source: netip.MustParseAddr("198.18.0.2"), Master: netip.MustParseAddr("198.18.0.2"),
			MasterPriority: 200, MasterAdvertInterval: 100 * time.Millisecond, Transitions: 2, LastTransition: time.Now(),
			AdvertsSent: 40, AdvertsReceived: 3}}
	st.Drops[ha.DropTTL] = 2
	if f.demoted {
		st.State, st.Forwarding, st.Demoted = ha.Backup, false, true
		st.Master, st.MasterPriority, st.MasterDownInterval = netip.MustParseAddr("198.18.0.3"), 100, 361*time.Millisecond
	}
	return st
}

func (f *fakeVRRP) Demote() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.demoted = true
	return nil
}

func TestCtlVRRP(t *testing.T) {
	cfg, err := config.Parse("x.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := startController(t, cfg)
	f := &fakeVRRP{}
	// Through the unix socket, as ctl talks to a local daemon by default.
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := control.ListenSocket(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- control.Serve(sctx, ln, control.NewHandler(c, control.HandlerOptions{VRRP: f}),
			slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() { stop(); <-served })
	ctl := func(args ...string) (int, string, string) {
		return runXLB(append([]string{"ctl", "--socket", sock}, args...)...)
	}

	code, out, errs := ctl("vrrp")
	if code != 0 || !strings.Contains(out, "51 on eth0, priority 200") || !regexpLine(out, "state", "master") ||
		!regexpLine(out, "forwarding", "true") || !strings.Contains(out, "ttl=2") || !strings.Contains(out, "198.19.0.10") {
		t.Fatalf("vrrp: %d %q %q", code, out, errs)
	}
	code, out, errs = ctl("demote")
	if code != 0 || !regexpLine(out, "state", "backup (demoted)") || !regexpLine(out, "forwarding", "false") ||
		!strings.Contains(out, "198.18.0.3 (priority 100)") {
		t.Fatalf("demote: %d %q %q", code, out, errs)
	}
	code, out, _ = ctl("--json", "vrrp")
	var st control.VRRPStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != ha.Backup || !st.Demoted || st.Master.String() != "198.18.0.3" {
		t.Fatalf("vrrp --json: %d %q", code, out)
	}
	if code, _, _ := ctl("demote", "now"); code != 2 {
		t.Errorf("demote with an argument: exit %d, want 2", code)
	}

	// A daemon without a vrrp section answers 404.
	_, url := ctlServer(t)
	if code, _, errs := runXLB("ctl", "--api", url, "--token", "t0k", "vrrp"); code != 1 || !strings.Contains(errs, "404") ||
		!strings.Contains(errs, "no vrrp section") {
		t.Errorf("vrrp without vrrp: %d %q", code, errs)
	}
}

// regexpLine reports whether the table has a row "key   value".
func regexpLine(out, key, value string) bool {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "  "); ok && k == key && strings.TrimSpace(v) == value {
			return true
		}
	}
	return false
}
