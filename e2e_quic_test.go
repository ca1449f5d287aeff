package xlb_test

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

const quicKey = "8f95f09245765f80256934e50c66207f"

// TestE2EEmbeddedQUICGUE runs the whole stack from a configuration file: a program embedding
// xlb (see embedMain) serves a QUIC service with encrypted QUIC-LB connection IDs over a GUE
// tunnel, its health checks going through the VIP inside GUE. quic-go servers on the
// backends issue the IDs; a quic-go client streams, a backend other than its server dies
// (the health checks take it out), the client migrates to a new address and port, and the
// transfer goes on with the same server (root only; skips otherwise).
func TestE2EEmbeddedQUICGUE(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_GSO", "true") // the veths have checksum offload off
	tn := testnet.New(t, lab.Config{Backends: 3, DisableIPv6: true, Decap: true})
	lb, err := encap.NewQUICLB(encap.QUICLBConfig{ServerIDLen: 2, NonceLen: 5, Key: mustHex(t, quicKey)})
	if err != nil {
		t.Fatal(err)
	}
	tc := testnet.SelfSignedTLS(t)
	vip := netip.AddrPortFrom(tn.VIP, 443)
	var y strings.Builder
	fmt.Fprintf(&y, `interfaces: [{name: eth0}]
services:
  - name: h3
    vip: %s
    port: 443
    protocol: udp
    method: tunnel
    tunnel_source: %s
    encap: gue
    quic: {server_id_len: 2, cid_len: 8, mode: encrypted, key: %s}
    health: {kind: http, port: 80, path: /healthz, interval: 200ms, timeout: 100ms, rise: 1, fall: 2, through_vip: true}
    backends:
`, tn.VIP, tn.LB.Addr(), quicKey)
	for i, b := range tn.Backends {
		if err := b.Decap.AddUDPPort(encap.DefaultGUEPort); err != nil {
			t.Fatal(err)
		}
		sid := []byte{0x0a, byte(i + 1)}
		testnet.ServeQUIC(t, b, vip, testnet.QUICConnIDs{LB: lb, ServerID: sid}, tc)
		fmt.Fprintf(&y, "      - {name: %s, address: %s, server_id: %x}\n", b.Name, b.Addr(), sid)
	}
	out := startEmbedded(t, tn, y.String())
	names := make([]string, len(tn.Backends))
	for i, b := range tn.Backends {
		names[i] = b.Name
	}
	res := testnet.RunQUICMigration(t, testnet.QUICMigration{Client: tn.Client, VIP: vip,
		Before: func(server string) netip.AddrPort {
			up := make([]bool, len(names))
			victim := ""
			for i, n := range names {
				up[i] = true
				if n != server && victim == "" {
					victim, up[i] = n, false
				}
			}
			if err := tn.Backend(victim).Kill(); err != nil {
				t.Fatal(err)
			}
			waitLog(t, out, "backend=h3/"+victim, "to=down")
			local := tn.ClientPool.Addr().Next().Next()
			return netip.AddrPortFrom(local, portAwayFrom(t, names, up, vip, local, server))
		}})
	t.Logf("%d records, %d before the move, all from %s; the server saw the new address: %v",
		res.Records, res.Moved, res.Server, res.SawNewAddr)
}

// startEmbedded starts this test binary as the embedding program with configuration y in
// the LB's namespace, waits until every backend is up, and stops it in t.Cleanup.
func startEmbedded(t *testing.T, tn *lab.Net, y string) *testnet.Output {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
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
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the embedding program exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the embedding program did not stop on SIGTERM")
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("embedding program's output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "ready: ") {
		select {
		case err := <-exited:
			t.Fatalf("the embedding program exited: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the embedding program did not get ready:\n%s", out.String())
		}
	}
	return out
}

// waitLog waits until a line of out contains every one of words.
func waitLog(t *testing.T, out *testnet.Output, words ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			all := true
			for _, w := range words {
				all = all && strings.Contains(sc.Text(), w)
			}
			if all {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q in:\n%s", words, out.String())
}

// portAwayFrom returns a port for local whose 4-tuple to vip the service's Maglev table
// (the backends named names, weight 100, up as up says: the table control builds) sends to a
// backend other than avoid, both before and after the change, so that only connection-ID
// routing can keep a flow that moves there on avoid.
func portAwayFrom(t *testing.T, names []string, up []bool, vip netip.AddrPort, local netip.Addr, avoid string) uint16 {
	t.Helper()
	table := func(up []bool) *sched.Service {
		bs := make([]sched.Backend, len(names))
		for i, n := range names {
			bs[i] = sched.Backend{ID: uint32(i + 1), Name: n, Weight: 100, Up: up[i]}
		}
		s, err := sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev}, bs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := make([]bool, len(up))
	for i := range all {
		all[i] = true
	}
	before, after := table(all), table(up)
	var k sched.Key
	copy(k.Src[:], local.AsSlice())
	copy(k.Dst[:], vip.Addr().AsSlice())
	k.DstPort, k.Proto = vip.Port(), encap.ProtoUDP
	for p := uint16(20000); p < 30000; p++ {
		k.SrcPort = p
		if before.Backend(before.Lookup(&k)).Name != avoid && after.Backend(after.Lookup(&k)).Name != avoid {
			return p
		}
	}
	t.Fatal("no port maps away from " + avoid)
	return 0
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}
