package xlb_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb"
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// embedEnv names the configuration file when this test binary runs as the
// embedding program (see embedMain).
const embedEnv = "XLB_TEST_EMBED_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(embedEnv); path != "" {
		os.Exit(embedMain(path))
	}
	os.Exit(m.Run())
}

// embedMain is a Go program that embeds xlb, as a user's would: it loads a
// configuration, builds the balancer, runs it until SIGTERM and says
// "ready" on stdout once every backend of its first service is up. TestE2EEmbedded starts this test
// binary as that program inside the LB's network namespace.
func embedMain(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("config", "err", err)
		return 2
	}
	lb, err := xlb.New(cfg, xlb.WithLogger(log))
	if err != nil {
		log.Error("new", "err", err)
		return 2
	}
	defer lb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-lb.Ready()
		for ctx.Err() == nil {
			st := lb.Status(ctx)
			if s := st.Services[0]; s.Up == s.Backends {
				fmt.Printf("ready: %d of %d backends up, api %v\n", s.Up, s.Backends, lb.APIAddr())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := lb.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// TestE2EEmbedded runs a Go program that embeds xlb (this test binary, see
// embedMain) in the LB's namespace of a one-armed topology and sends real
// HTTP through the VIP to the backends; on SIGTERM the program stops and
// leaves no XDP program and no policy rule behind (root only; skips
// otherwise).
func TestE2EEmbedded(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tn.VIP)
	for _, be := range tn.Backends {
		fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
	}
	// Checks through the VIP add policy rules, which must go with the program.
	b.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 100ms, through_vip: true}\n")
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &testnet.Output{}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), embedEnv+"="+path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := tn.LB.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("embedding program's output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "ready: 2 of 2 backends up, api <nil>") {
		select {
		case err := <-exited:
			t.Fatalf("the embedding program exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the embedding program did not get ready")
		}
	}

	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	url := "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	tally := lab.Spread(context.Background(), client, url, 40, 10*time.Second)
	if tally.Failed != 0 || tally.ByBackend["b0"] == 0 || tally.ByBackend["b1"] == 0 {
		t.Fatalf("HTTP through the embedded xlb: %v", tally)
	}
	t.Logf("HTTP through the embedded xlb: %v", tally)
	if n, local := markRules(t, tn.LB); n != 2 || local == 0 {
		t.Errorf("while running: %d mark rules, lookup local at %d; want one per backend, local moved", n, local)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the embedding program exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the embedding program did not stop on SIGTERM")
	}
	err := tn.LB.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return errors.New("an XDP program is still attached to eth0")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n, local := markRules(t, tn.LB); n != 0 || local != 0 {
		t.Errorf("after the program stopped: %d mark rules left, lookup local at %d (want 0, 0)", n, local)
	}
}

// markRules counts the LB namespace's IPv4 policy rules on a firewall mark
// (the checks through the VIP) and says where "lookup local" is.
func markRules(t *testing.T, h *lab.Host) (n, localPref int) {
	t.Helper()
	nl, err := netlink.NewHandleAt(h.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	rules, err := nl.RuleList(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	localPref = -1
	for _, r := range rules {
		if r.Mark != 0 {
			n++
		}
		if r.Table == unix.RT_TABLE_LOCAL {
			localPref = r.Priority
		}
	}
	return n, localPref
}
