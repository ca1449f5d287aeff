package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// syncCase is one scheduler of the sync failover test.
type syncCase struct {
	name      string
	scheduler string
	weights   []int  // per backend; nil: 1 each
	add       bool   // start with all but the last backend, add it (reload) before the failover
	persist   bool   // persistence: {timeout: 300s}: the client's new connections after the failover follow its old ones
	connTable string // a conn_table section (one line of YAML), if any
	noTpl     bool   // sync.no_templates
}

// syncEnv is what every run of the sync failover test shares.
type syncEnv struct {
	t       *testing.T
	tn      *lab.Net
	dir     string
	bin     string
	key     string // the sync key, hex
	logs    *testnet.Output
	watch   net.PacketConn // a third sync peer in the client namespace: sees lb0's messages
	watchAt netip.AddrPort
}

// TestE2ESyncFailover runs two real `xlb run` processes as a VRRP pair, opens
// 24 long-lived TCP connections through the master (between short ones, so that
// the master's scheduler state runs ahead of the backup's), SIGKILLs the master
// and counts the connections that still reach their backend through the new
// master: for rr, wrr, least-conn and maglev after a backend was added, first
// without a sync section (the figure to beat), then with one (all must survive).
// The rr run with sync also checks that a forged and a replayed sync message
// change nothing, and that the new master's memory stays flat under a flood of
// synced entries (root only; skips otherwise).
func TestE2ESyncFailover(t *testing.T) {
	env := newSyncEnv(t, 4)
	cases := []syncCase{
		{name: "rr", scheduler: "rr"},
		{name: "wrr", scheduler: "wrr", weights: []int{1, 2, 3, 4}},
		{name: "least-conn", scheduler: "least-conn"},
		{name: "maglev-added", scheduler: "maglev", add: true},
		{name: "rr-persistent", scheduler: "rr", persist: true},
	}
	var report []string
	for _, c := range cases {
		without := env.run(c, false)
		with := env.run(c, true)
		report = append(report, fmt.Sprintf("%s: %d/%d survived without sync, %d/%d with", c.name, without, syncConns, with, syncConns))
		if with != syncConns {
			t.Errorf("%s with sync: %d of %d connections survived the failover", c.name, with, syncConns)
		}
		switch {
		case without < syncConns:
		case c.add:
			// maglev keeps about 3/4 of the flows by itself: all 24 do so once in ~600 runs.
			t.Logf("%s without sync: every connection survived by chance; this run proves less", c.name)
		case c.persist:
			// all of one client's connections share a backend: the new master's first pick
			// keeps them all when it happens to be that backend (1 in 4).
			t.Logf("%s without sync: the new master picked the client's backend by chance; this run proves less", c.name)
		default:
			t.Errorf("%s without sync: every connection survived: the test proves nothing", c.name)
		}
	}
	t.Logf("SIGKILL failover, %d long-lived connections:\n  %s", syncConns, strings.Join(report, "\n  "))
}

// syncConns is the number of long-lived connections per run.
const syncConns = 24

// syncVRRPInterval is the pair's advertisement interval: slower than the VRRP test's, so
// that a loaded machine does not make the new master flap while the connections are checked.
const syncVRRPInterval = 250 * time.Millisecond

// config writes lb i's configuration for case c (n backends) and returns its path.
func (env *syncEnv) config(c syncCase, i, n int, withSync bool) string {
	tn := env.tn
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    scheduler: %s\n    backends:\n",
		tn.VIP, c.scheduler)
	for j, be := range tn.Backends[:n] {
		w := 1
		if c.weights != nil {
			w = c.weights[j]
		}
		fmt.Fprintf(&b, "      - {name: %s, address: %s, weight: %d}\n", be.Name, be.Addr(), w)
	}
	b.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 3}\n")
	if c.persist {
		b.WriteString("    persistence: {timeout: 300s}\n")
	}
	fmt.Fprintf(&b, "vrrp:\n  interface: eth0\n  virtual_router_id: 51\n  priority: %d\n  advert_interval: %v\n"+
		"  preempt: false\n  vips: [%s]\n", 200-100*i, syncVRRPInterval, tn.VIP)
	fmt.Fprintf(&b, "api: {socket: %s}\n", filepath.Join(env.dir, fmt.Sprintf("lb%d.sock", i)))
	if c.connTable != "" {
		fmt.Fprintf(&b, "conn_table: %s\n", c.connTable)
	}
	if withSync {
		fmt.Fprintf(&b, "sync:\n  listen: %s\n  peers: [%s, %q]\n  key: %s\n  capacity: %d\n  no_templates: %v\n",
			tn.LBs[i].Addr(), tn.LBs[1-i].Addr(), env.watchAt, env.key, syncCapacity, c.noTpl)
	}
	conf := filepath.Join(env.dir, fmt.Sprintf("lb%d.yaml", i))
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		env.t.Fatal(err)
	}
	return conf
}

// syncCapacity is the peer table's size in the test (small, so that the flood fills it).
const syncCapacity = 1 << 16

func (env *syncEnv) waitFor(what string, limit time.Duration, ok func() bool) {
	env.t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			env.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncStatus asks lb's API for its sync counters (zero on error).
func syncStatus(lb *vrrpLB) control.SyncStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, _ := lb.api.Sync(ctx)
	return st
}

// run is one failover of case c; it returns how many connections survived.
func (env *syncEnv) run(c syncCase, withSync bool) int {
	t := env.t
	t.Helper()
	n := len(env.tn.Backends)
	if c.add {
		n--
	}
	fmt.Fprintf(env.logs, "==== %s, sync %v\n", c.name, withSync)
	env.drainWatch()
	lb0, lb1 := env.startPair(c, n, withSync)
	conns := env.openConns(syncConns)
	defer closeConns(conns)
	if c.add {
		// Both hosts get the new backend (a reload): maglev moves about a quarter of its
		// slots to it.
		for i, lb := range []*vrrpLB{lb0, lb1} {
			env.config(c, i, n+1, withSync)
			if err := lb.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		env.waitFor("the added backend up on both", 10*time.Second, func() bool {
			return lb0.servicesUp() == n+1 && lb1.servicesUp() == n+1
		})
	}
	if withSync {
		env.settle(lb1, syncConns)
		if c.name == "rr" {
			env.refusals(lb1, conns)
		}
	}
	survived := env.failover(lb0, lb1, conns)
	if c.persist && withSync && survived == syncConns {
		env.newConnsFollow(conns)
	}
	if withSync && c.name == "rr" {
		env.flood(lb1)
		out, err := lb1.host.Run(env.bin, "ctl", "--socket", filepath.Join(env.dir, "lb1.sock"), "sync")
		if err != nil || !strings.Contains(string(out), "auth=2") {
			t.Errorf("xlb ctl sync: %v\n%s", err, out)
		}
		t.Logf("xlb ctl sync on the new master:\n%s", out)
	}
	if withSync {
		st := syncStatus(lb1)
		t.Logf("%s: lb1 sync after the failover: applied %d, peer-table hits %d, lag last %v max %v, drops %v",
			c.name, st.Applied, st.Table.Hits, st.LagLast, st.LagMax, st.Dropped)
	}
	closeConns(conns)
	env.stopPair(lb0, lb1)
	return survived
}

// startPair starts lb0 (master) and lb1 (backup) for case c with n backends.
func (env *syncEnv) startPair(c syncCase, n int, withSync bool) (lb0, lb1 *vrrpLB) {
	lbs := make([]*vrrpLB, 2)
	for i := range lbs {
		h := env.tn.LBs[i]
		lbs[i] = &vrrpLB{t: env.t, host: h, bin: env.bin, conf: env.config(c, i, n, withSync), logs: env.logs,
			api: &control.Client{Base: "http://" + config.DefaultAPIListen, HTTP: h.HTTPClient(lab.ClientOptions{Timeout: time.Second})}}
	}
	lb0, lb1 = lbs[0], lbs[1]
	lb0.start()
	env.waitFor("lb0 master", 10*time.Second, func() bool { st := lb0.status(); return st.State == ha.Master && st.Forwarding })
	lb1.start()
	env.waitFor("lb1 backup", 10*time.Second, func() bool { return lb1.status().State == ha.Backup })
	env.waitFor("backends up on both", 10*time.Second, func() bool { return lb0.servicesUp() == n && lb1.servicesUp() == n })
	return lb0, lb1
}

// openConns opens n long-lived connections to the VIP, each after a short one (a request
// on a connection of its own), as other clients would make.
func (env *syncEnv) openConns(n int) []*keepConn {
	t, tn := env.t, env.tn
	t.Helper()
	addr := net.JoinHostPort(tn.VIP.String(), "80")
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 5 * time.Second})
	defer client.CloseIdleConnections()
	conns := make([]*keepConn, 0, n)
	for range n {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		nc, err := tn.Client.Dial(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		k := &keepConn{c: testnet.NewHTTPConn(nc)}
		if k.backend, err = k.c.Get(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, k)
	}
	return conns
}

func closeConns(conns []*keepConn) {
	for _, k := range conns {
		k.c.Close()
	}
}

// settle waits until lb has applied at least want records and neither what it received
// nor what it applied moved for 100 ms (the short connections send two each: established,
// then closing). A received record need not apply: a removal of a flow the peer table does
// not hold changes nothing.
func (env *syncEnv) settle(lb *vrrpLB, want uint64) {
	env.t.Helper()
	var last control.SyncStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		st := syncStatus(lb)
		if st.Applied >= want && st.Applied == last.Applied && st.ReceivedRecords == last.ReceivedRecords {
			return
		}
		last = st
		if time.Now().After(deadline) {
			env.t.Fatalf("timed out waiting for the peer holding the connections: applied %d (want %d), received %d records, drops %v",
				st.Applied, want, st.ReceivedRecords, st.Dropped)
		}
	}
}

// newConnsFollow checks that new connections of the client, after the failover, reach the
// backend its persistent connections have (the new master learned it from them).
func (env *syncEnv) newConnsFollow(conns []*keepConn) {
	want := conns[0].backend
	for _, k := range conns {
		if k.backend != want {
			env.t.Fatalf("persistent service: the client's connections were on %s and %s before the failover", want, k.backend)
		}
	}
	fresh := env.openConns(8)
	defer closeConns(fresh)
	for i, k := range fresh {
		if k.backend != want {
			env.t.Errorf("persistent service: new connection %d after the failover reached %s, want %s", i, k.backend, want)
		}
	}
}

// survivors returns how many of conns still reach their backend.
func survivors(conns []*keepConn) int {
	n := 0
	for _, k := range conns {
		if got, err := k.c.Get(5 * time.Second); err == nil && got == k.backend {
			n++
		}
	}
	return n
}

// failover SIGKILLs lb0, waits for lb1 to take over and counts the surviving connections.
func (env *syncEnv) failover(lb0, lb1 *vrrpLB, conns []*keepConn) int {
	if err := lb0.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		env.t.Fatal(err)
	}
	env.waitFor("lb1 master and forwarding", 5*time.Second, func() bool {
		st := lb1.status()
		return st.State == ha.Master && st.Forwarding && lb1.hasVIP(env.tn.VIP.String())
	})
	<-lb0.exited
	return survivors(conns)
}

// stopPair stops lb1 cleanly and removes what the killed lb0 left: its crash guard and VIP.
func (env *syncEnv) stopPair(lb0, lb1 *vrrpLB) {
	t := env.t
	if err := lb1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lb1.exited:
		if err != nil {
			t.Errorf("lb1: xlb run exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lb1: xlb run did not stop on SIGTERM")
	}
	if err := lb0.guard().Remove(); err != nil {
		t.Fatal(err)
	}
	err := lb0.host.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: env.tn.VIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrDel(l, a); err != nil && err != syscall.EADDRNOTAVAIL {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// drainWatch empties the watching peer's socket (messages of earlier runs).
func (env *syncEnv) drainWatch() {
	buf := make([]byte, 1<<16)
	for {
		_ = env.watch.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, _, err := env.watch.ReadFrom(buf); err != nil {
			return
		}
	}
}

// refusals sends lb1 (the backup, holding lb0's connections) a forged message that
// would move every connection to another backend, and a replay of one of lb0's own
// messages: both are refused and counted, and nothing is applied.
func (env *syncEnv) refusals(lb1 *vrrpLB, conns []*keepConn) {
	t, tn := env.t, env.tn
	t.Helper()
	// lb0's last message, as a third peer saw it (lb1 has it: an earlier one may have
	// gone out before lb1 listened, and the window would accept that once).
	buf := make([]byte, 1<<16)
	var genuine []byte
	for {
		_ = env.watch.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		m, from, err := env.watch.ReadFrom(buf)
		if err != nil {
			break
		}
		if from.(*net.UDPAddr).IP.Equal(tn.LBs[0].Addr().AsSlice()) {
			genuine = append(genuine[:0], buf[:m]...)
		}
	}
	if genuine == nil {
		t.Fatal("no sync message from lb0 reached the watching peer")
	}
	wrong := tn.Backends[0].Addr().As4()
	vip := tn.VIP.As4()
	var recs []connsync.Record
	for _, k := range conns {
		la := k.c.LocalAddr().(*net.TCPAddr)
		ip := la.IP.To4()
		recs = append(recs, connsync.Record{Key: sched.Key{Src: [16]byte{ip[0], ip[1], ip[2], ip[3]},
			Dst: [16]byte{vip[0], vip[1], vip[2], vip[3]}, SrcPort: uint16(la.Port), DstPort: 80, Proto: 6},
			Backend: [16]byte{wrong[0], wrong[1], wrong[2], wrong[3]}, State: sched.ConnEstablished})
	}
	// Two forged messages of 12 records each (a message of 24 would be refused as
	// oversized before its MAC is looked at).
	forger, _ := connsync.NewSealer([]byte("not the cluster's key, 32 bytes!"))
	var msgs [][]byte
	for i := 0; i < len(recs); i += 12 {
		part := recs[i:min(i+12, len(recs))]
		h := connsync.Header{Sender: 99, Seq: uint64(1 + i), Sent: time.Now().UnixNano(), Oldest: time.Now().UnixNano()}
		msgs = append(msgs, forger.Seal(make([]byte, connsync.Size(len(part))), &h, part))
	}
	msgs = append(msgs, genuine)
	before := syncStatus(lb1)
	to, _ := net.ResolveUDPAddr("udp4", net.JoinHostPort(tn.LBs[1].Addr().String(), strconv.Itoa(connsync.DefaultPort)))
	for _, msg := range msgs {
		if _, err := env.watch.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for st := syncStatus(lb1); st.Dropped["auth"] == before.Dropped["auth"] || st.Dropped["replay"] == before.Dropped["replay"]; st = syncStatus(lb1) {
		if time.Now().After(deadline) {
			t.Fatalf("lb1 did not count the forged and the replayed message: %+v -> %+v", before, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := syncStatus(lb1)
	if after.Applied != before.Applied || after.ReceivedRecords != before.ReceivedRecords {
		t.Errorf("forged/replayed messages were applied: %+v -> %+v", before, after)
	}
	t.Logf("rr: lb1 refused a forged message (auth %d) and a replayed one (replay %d); applied stayed %d",
		after.Dropped["auth"], after.Dropped["replay"], after.Applied)
}

// flood sends lb1 authenticated messages naming 6x its peer-table capacity of distinct
// flows and checks that its resident memory stays flat once the table is full.
func (env *syncEnv) flood(lb *vrrpLB) {
	t, tn := env.t, env.tn
	t.Helper()
	key, _ := hex.DecodeString(env.key)
	s, _ := connsync.NewSealer(key)
	to, _ := net.ResolveUDPAddr("udp4", net.JoinHostPort(tn.LBs[1].Addr().String(), strconv.Itoa(connsync.DefaultPort)))
	per := (connsync.DefaultMaxMessage - connsync.Size(0)) / connsync.RecordSize
	recs := make([]connsync.Record, per)
	buf := make([]byte, connsync.Size(per))
	be := tn.Backends[0].Addr().As4()
	vip := tn.VIP.As4()
	seq, flow := uint64(0), uint32(0)
	send := func(flows int) {
		for sent := 0; sent < flows; sent += per {
			for i := range recs {
				flow++
				recs[i] = connsync.Record{Key: sched.Key{Src: [16]byte{198, 18, byte(flow >> 16), byte(flow >> 8)},
					Dst: [16]byte{vip[0], vip[1], vip[2], vip[3]}, SrcPort: uint16(flow), DstPort: 80, Proto: 6},
					Backend: [16]byte{be[0], be[1], be[2], be[3]}, State: sched.ConnEstablished}
			}
			seq++
			h := connsync.Header{Sender: 7, Seq: seq, Sent: time.Now().UnixNano(), Oldest: time.Now().UnixNano()}
			if _, err := env.watch.WriteTo(s.Seal(buf, &h, recs), to); err != nil {
				t.Fatal(err)
			}
			if seq%64 == 0 {
				time.Sleep(time.Millisecond) // let the receiver keep up (a full socket buffer drops)
			}
		}
	}
	rss := func() int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", lb.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				return kb
			}
		}
		t.Fatal("no VmRSS")
		return 0
	}
	send(2 * syncCapacity)
	time.Sleep(200 * time.Millisecond)
	r0, st0 := rss(), syncStatus(lb)
	send(4 * syncCapacity)
	time.Sleep(200 * time.Millisecond)
	r1, st1 := rss(), syncStatus(lb)
	t.Logf("flood: %d more synced flows applied (%d evictions); lb1 RSS %d -> %d KiB; table %d/%d",
		st1.Applied-st0.Applied, st1.Table.Evictions, r0, r1, st1.Table.Entries, st1.Table.Capacity)
	if st1.Applied-st0.Applied < 2*syncCapacity || st1.Table.Evictions == 0 {
		t.Errorf("the flood did not fill the table: %+v", st1.Table)
	}
	if st1.Table.Entries > st1.Table.Capacity {
		t.Errorf("peer table over capacity: %+v", st1.Table)
	}
	if r1 > r0+4096 {
		t.Errorf("lb1's resident memory grew %d KiB under the flood", r1-r0)
	}
}

// TestE2ESyncECMP runs two `xlb run` processes that both forward (as ECMP members do,
// without VRRP), each listing the other as its sync peer. The client's neighbour entry for
// the VIP plays the router: 24 long-lived round-robin connections opened through lb0 move
// to lb1, 24 more are opened there, and all 48 move back to lb0: every connection stays on
// its backend both ways (root only; skips otherwise).
func TestE2ESyncECMP(t *testing.T) {
	tn := testnet.New(t, lab.Config{LBs: 2, Backends: 3, NoVIPOnLB: true, DisableIPv6: true})
	env := &syncEnv{t: t, tn: tn, dir: t.TempDir(), logs: &testnet.Output{}}
	env.bin = filepath.Join(env.dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", env.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("xlb run logs:\n%s", env.logs.String())
		}
	})
	lbs := env.startForwarding()
	var conns []*keepConn
	t.Cleanup(func() { closeConns(conns) })
	check := func(phase string) {
		if n := survivors(conns); n != len(conns) {
			t.Errorf("%s: %d of %d connections on their backends", phase, n, len(conns))
		} else {
			t.Logf("%s: %d/%d connections on their backends", phase, n, len(conns))
		}
	}
	env.route(0)
	conns = append(conns, env.openConns(syncConns)...)
	env.settle(lbs[1], syncConns)
	env.route(1)
	check("moved to lb1")
	conns = append(conns, env.openConns(syncConns)...)
	env.settle(lbs[0], syncConns)
	env.route(0)
	check("moved back to lb0")
	for i, lb := range lbs {
		st := syncStatus(lb)
		t.Logf("lb%d: sent %d records, applied %d, peer-table hits %d, lag max %v", i, st.SentRecords, st.Applied, st.Table.Hits, st.LagMax)
		if st.SentRecords == 0 || st.Table.Hits < syncConns {
			t.Errorf("lb%d sent %d records and found %d flows in the peer table; want both directions used", i, st.SentRecords, st.Table.Hits)
		}
	}
}

// startForwarding starts two `xlb run` processes without VRRP (both forward), round-robin,
// each the other's sync peer; they stop at the test's end.
func (env *syncEnv) startForwarding() []*vrrpLB {
	t, tn := env.t, env.tn
	var k [32]byte
	_, _ = rand.Read(k[:])
	lbs := make([]*vrrpLB, 2)
	for i := range lbs {
		var b strings.Builder
		fmt.Fprintf(&b, "interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    scheduler: rr\n    backends:\n", tn.VIP)
		for _, be := range tn.Backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		b.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 3}\n")
		fmt.Fprintf(&b, "api: {socket: %s}\n", filepath.Join(env.dir, fmt.Sprintf("lb%d.sock", i)))
		fmt.Fprintf(&b, "sync: {listen: %s, peers: [%s], key: %s}\n", tn.LBs[i].Addr(), tn.LBs[1-i].Addr(), hex.EncodeToString(k[:]))
		conf := filepath.Join(env.dir, fmt.Sprintf("lb%d.yaml", i))
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		h := tn.LBs[i]
		lb := &vrrpLB{t: t, host: h, bin: env.bin, conf: conf, logs: env.logs,
			api: &control.Client{Base: "http://" + config.DefaultAPIListen, HTTP: h.HTTPClient(lab.ClientOptions{Timeout: time.Second})}}
		lb.start()
		t.Cleanup(func() {
			_ = lb.cmd.Process.Signal(syscall.SIGTERM)
			<-lb.exited
		})
		lbs[i] = lb
	}
	env.waitFor("backends up on both", 10*time.Second, func() bool {
		return lbs[0].servicesUp() == len(tn.Backends) && lbs[1].servicesUp() == len(tn.Backends)
	})
	return lbs
}

// route sends the client's VIP traffic to lb i, as a router's ECMP choice would.
func (env *syncEnv) route(i int) {
	tn := env.tn
	err := tn.Client.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: tn.VIP.AsSlice(), HardwareAddr: tn.LBs[i].Ifaces[0].MAC})
	})
	if err != nil {
		env.t.Fatal(err)
	}
}
