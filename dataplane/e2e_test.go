package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// The end-to-end tests run real traffic through namespaces that internal/testnet builds
// (root only; they skip otherwise) with the dataplane running in the LB's namespace.

// startDataplane sets the data path up on the LB's interfaces (inside its namespace).
func startDataplane(t *testing.T, lb *testnet.Host, ifaces ...string) *Dataplane {
	t.Helper()
	cfg := Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 14}
	for _, name := range ifaces {
		cfg.Interfaces = append(cfg.Interfaces, InterfaceConfig{Name: name})
	}
	var dp *Dataplane
	err := lb.Do(func() (err error) {
		dp, err = New(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("dataplane: %v", err)
	}
	t.Cleanup(func() {
		if err := dp.Close(); err != nil {
			t.Errorf("dataplane close: %v", err)
		}
	})
	for _, info := range dp.Interfaces() {
		t.Logf("%s: xdp %s, zero copy %v, %d queue(s)", info.Name, info.XDPMode, info.ZeroCopy, info.Queues)
	}
	return dp
}

func run2(t *testing.T, dp *Dataplane, s *Snapshot) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			sc, err := dp.SteeringCounters()
			t.Logf("xdp counters %v (%v)", sc, err)
			for _, ws := range dp.Stats() {
				t.Logf("worker %d on cpu %d: %+v", ws.Queue, ws.CPU, ws.Counters)
			}
		}
	})
	if err := dp.Publish(s); err != nil {
		t.Fatalf("publish: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dp.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
}

// resolve asks the LB's kernel for the next hop towards addr.
func resolve(t *testing.T, lb *testnet.Host, addr netip.Addr) NextHop {
	t.Helper()
	var hop NextHop
	err := lb.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		hop, err = ResolveNextHop(ctx, addr)
		return err
	})
	if err != nil {
		t.Fatalf("resolve %v: %v", addr, err)
	}
	return hop
}

// backendSpec builds a service over the topology's backends (their IPv4 or IPv6 address).
func backendSpec(t *testing.T, n *testnet.Net, name string, index int, vip netip.Addr, port uint16, m Method) ServiceSpec {
	t.Helper()
	var bs []sched.Backend
	var ts []Target
	for i, b := range n.Backends {
		addr := b.Addr()
		if vip.Is6() {
			addr = b.Addr6()
		}
		bs = append(bs, sched.Backend{ID: uint32(i + 1), Name: b.Name, Weight: 1, Up: true})
		ts = append(ts, Target{Addr: addr, Hop: resolve(t, n.LB, addr)})
	}
	sv, err := sched.NewService(sched.ServiceConfig{Index: index, Strategy: sched.Maglev}, bs)
	if err != nil {
		t.Fatal(err)
	}
	return ServiceSpec{Name: name, VIP: vip, Port: port, Proto: encap.ProtoTCP, Method: m, Sched: sv, Targets: ts}
}

// httpGet makes one HTTP/1.0 request on a new connection and returns the backend's name
// (the body) and the client's port.
func httpGet(ctx context.Context, client *testnet.Host, vip netip.Addr, port uint16) (string, uint16, error) {
	c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(vip, port).String())
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	lport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n"); err != nil {
		return "", lport, err
	}
	body, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", lport, err
	}
	s := string(body)
	if !strings.HasPrefix(s, "HTTP/1.0 200") {
		return "", lport, fmt.Errorf("response %q", s)
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), lport, nil
}

// checkSpread makes n requests and checks each was answered by the backend the service's
// Maglev table names for its flow.
func checkSpread(t *testing.T, tn *testnet.Net, sp ServiceSpec, src netip.Addr, requests int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]int{}
	a, v6 := addr16(src)
	d, _ := addr16(sp.VIP)
	for i := range requests {
		name, lport, err := httpGet(ctx, tn.Client, sp.VIP, sp.Port)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		k := sched.Key{Src: a, Dst: d, SrcPort: lport, DstPort: sp.Port, Proto: encap.ProtoTCP, V6: v6}
		want := sp.Sched.Backend(sp.Sched.LookupHash(sched.Hash(&k))).Name
		if name != want {
			t.Fatalf("request %d from port %d answered by %s, the scheduler picked %s", i, lport, name, want)
		}
		got[name]++
	}
	return got
}

func TestE2EDR(t *testing.T) {
	tn := testnet.New(t, testnet.Config{Backends: 3})
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	run2(t, dp, mustSnapshot(t, nil, sp))
	got := checkSpread(t, tn, sp, tn.Client.Addr(), 60)
	t.Logf("spread: %v", got)
	if len(got) != 3 {
		t.Errorf("not every backend answered: %v", got)
	}
	c := dp.Total()
	if c.RxPackets == 0 || c.TxPackets < c.RxPackets-c.Dropped() || c.Dropped() != 0 {
		t.Errorf("counters: %+v", c)
	}
	// Replies went straight to the client: the LB saw only client->VIP packets (no NAT
	// returns), about 5 per request (SYN, ACK, request, FIN, ACK).
	if c.NATReturns != 0 || c.RxPackets < 60*3 {
		t.Errorf("rx %d nat returns %d", c.RxPackets, c.NATReturns)
	}
}

var _ = errors.Is
