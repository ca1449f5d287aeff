package ha_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// Issue 6 part 2: two LB namespaces run the real data path (XDP + AF_XDP workers, Maglev)
// for one VIP, with a VRRP router each deciding who has it. The client holds long-lived TCP
// connections and runs a request loop; the master is unplugged (a dead host: no priority 0,
// nothing reaches it); the backup takes over, announces the VIP, and because it builds the
// same Maglev table it sends the old flows to the same backends: the connections survive.
// External test package: control may import ha.

const lbInterval = 100 * time.Millisecond

type lbHost struct {
	host       *lab.Host
	dp         *dataplane.Dataplane
	c          *control.Controller
	r          *ha.Router
	cancel     context.CancelFunc
	done       chan error
	forwarding atomic.Bool
}

func startLB(t *testing.T, tn *lab.Net, h *lab.Host, prio uint8, logs io.Writer) *lbHost {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n"+
		"    method: dr\n    scheduler: maglev\n    backends:\n", tn.VIP)
	for _, b := range tn.Backends {
		fmt.Fprintf(&y, "      - {name: %s, address: %s}\n", b.Name, b.Addr())
	}
	y.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 3}\n")
	cfg, err := config.Parse("lb.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	lb := &lbHost{host: h, done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("lb", h.Name())
	if err := h.Do(func() (err error) {
		dc := control.DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize, dc.ConnTableSize = 2048, 512, 1<<14
		lb.dp, err = dataplane.New(dc)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.dp.Close() })
	lb.c, err = control.New(cfg, control.Options{
		Publisher:   lb.dp,
		Stats:       lb.dp,
		Resolver:    control.NewKernelResolverIn(h.NsHandle()),
		HealthNetns: health.InNetns(h.Path()),
		Logger:      logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lb.cancel = cancel
	t.Cleanup(cancel)
	if err := lb.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := lb.dp.Start(sctx); err != nil {
		t.Fatal(err)
	}

	// VRRP: the hooks put the VIP on eth0 (so the kernel answers ARP for it; the XDP program
	// takes the VIP's TCP/80 frames before the kernel) and take it off.
	vcfg := ha.Config{Interface: "eth0", VirtualRouterID: 7, Priority: prio, AdvertInterval: lbInterval,
		VIPs: []netip.Addr{tn.VIP}}
	if err := vcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var tr ha.Transport
	if err := h.Do(func() (err error) { tr, err = ha.OpenTransport(&vcfg); return err }); err != nil {
		t.Fatal(err)
	}
	vip := netip.PrefixFrom(tn.VIP, 32)
	lb.r, err = ha.New(vcfg, ha.Hooks{
		OnMaster: func() error {
			if lb.forwarding.Swap(true) {
				return nil
			}
			return h.AddAddr("eth0", vip)
		},
		OnBackup: func() error {
			if !lb.forwarding.Swap(false) {
				return nil
			}
			return h.DelAddr("eth0", vip)
		},
	}, ha.WithTransport(tr), ha.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	go func() { lb.done <- lb.r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-lb.done })
	return lb
}

// waitUp waits until the controller sees every backend up.
func (lb *lbHost) waitUp(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := lb.c.Services()
		if len(s) == 1 && s[0].Up == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: backends not up: %+v", lb.host.Name(), s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// longConn is one long-lived HTTP/1.1 connection to the VIP.
type longConn struct {
	c       *testnet.HTTPConn
	backend string
}

// hang makes h a hung host: the switch keeps forwarding frames to its port (its MAC stays
// in the bridge's table) but drops everything to and from it, so nothing is flooded to the
// backup and the client's traffic goes nowhere until a gratuitous ARP moves it.
func hang(t *testing.T, tn *lab.Net, h *lab.Host) {
	t.Helper()
	rules := fmt.Sprintf(`table bridge xlbha {
	chain hung {
		type filter hook forward priority 0; policy accept;
		iifname %q drop
		oifname %q drop
	}
}
`, h.Ifaces[0].Peer, h.Ifaces[0].Peer)
	file := filepath.Join(t.TempDir(), "hang.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tn.Switch.Run("nft", "-f", file); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestLBFailoverConnectionsSurvive(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed (Debian package nftables)")
	}
	// unplugged: the master's link goes down; the bridge forgets its MAC and floods the
	// client's frames for it, which reach the backup too. hung: the link stays up and the
	// frames go to the dead port: only the new master's gratuitous ARP moves the traffic.
	for _, mode := range []string{"unplugged", "hung"} {
		t.Run(mode, func(t *testing.T) { lbFailover(t, mode) })
	}
}

func lbFailover(t *testing.T, mode string) {
	tn := testnet.New(t, lab.Config{LBs: 2, Backends: 3, NoVIPOnLB: true, DisableIPv6: true})
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("LB logs:\n%s", logs.String())
		}
	})
	lb0 := startLB(t, tn, tn.LBs[0], 200, logs)
	deadline := time.Now().Add(5 * time.Second)
	for lb0.r.State() != ha.Master || !lb0.forwarding.Load() {
		if time.Now().After(deadline) {
			t.Fatal("lb0 did not become master")
		}
		time.Sleep(5 * time.Millisecond)
	}
	lb1 := startLB(t, tn, tn.LBs[1], 100, logs)
	lb0.waitUp(t, len(tn.Backends))
	lb1.waitUp(t, len(tn.Backends))
	if lb1.r.State() != ha.Backup {
		t.Fatalf("lb1 is %v", lb1.r.State())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := net.JoinHostPort(tn.VIP.String(), "80")
	const nConns = 24
	var conns []*longConn
	perBackend := map[string]int{}
	for range nConns {
		nc, err := tn.Client.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		p := &longConn{c: testnet.NewHTTPConn(nc)}
		if p.backend, err = p.c.Get(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		perBackend[p.backend]++
		conns = append(conns, p)
	}
	t.Logf("%d long-lived connections through lb0, by backend %v", nConns, perBackend)

	// Request loop: a new connection per request (a SYN retransmission after 1s still counts
	// as success within the 5s timeout; a failure is a reset or a timeout).
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 5 * time.Second})
	load := testnet.StartLoad(ctx, client, "http://"+addr+"/", 2)
	time.Sleep(500 * time.Millisecond)

	// Traffic goes through lb0's data path; the backup's forwards nothing.
	if tx0, tx1 := lb0.dp.Total().TxPackets, lb1.dp.Total().TxPackets; tx0 == 0 || tx1 != 0 {
		t.Fatalf("before failover: lb0 forwarded %d packets, lb1 %d (want >0, 0)", tx0, tx1)
	}

	// The master dies.
	crash := time.Now()
	if mode == "hung" {
		hang(t, tn, tn.LBs[0])
	} else if err := tn.Unplug(tn.LBs[0]); err != nil {
		t.Fatal(err)
	}
	for lb1.r.State() != ha.Master {
		if time.Since(crash) > 5*time.Second {
			t.Fatal("lb1 did not take over")
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(crash)
	skew := time.Duration(256-100) * lbInterval / 256
	bound := 3*lbInterval + skew
	t.Logf("lb1 took over %v after lb0 died (3*interval+skew = %v)", took.Round(time.Millisecond), bound)
	if took > bound+lbInterval {
		t.Errorf("takeover took %v, want within %v", took, bound)
	}

	// Every long-lived connection carries on, on the backend it had.
	time.Sleep(time.Second)
	survived := 0
	for i, p := range conns {
		got, err := p.c.Get(5 * time.Second)
		if err != nil || got != p.backend {
			t.Errorf("connection %d (backend %s) after failover: %q, %v", i, p.backend, got, err)
			continue
		}
		survived++
	}
	time.Sleep(500 * time.Millisecond)
	failures := load.Stop()
	okReq, failReq, slowest := load.Phase()
	t.Logf("failover: %d/%d long-lived connections survived; request loop %d ok, %d failed %v, slowest %v",
		survived, nConns, okReq, failReq, failures, slowest)
	if survived != nConns {
		t.Errorf("%d of %d connections survived", survived, nConns)
	}
	if okReq < 20 {
		t.Errorf("request loop made only %d requests", okReq)
	}
	if tot := lb1.dp.Total(); tot.TxPackets == 0 || tot.ConnMisses == 0 {
		t.Errorf("after failover lb1 forwarded %d packets, %d new-flow lookups", tot.TxPackets, tot.ConnMisses)
	} else {
		t.Logf("lb1 data path after failover: %d packets forwarded, %d connection-table misses (flows it had never seen)",
			tot.TxPackets, tot.ConnMisses)
	}
	if st := lb1.r.Status(); st.Announcements == 0 {
		t.Errorf("lb1 sent no gratuitous ARP: %+v", st)
	}
}
