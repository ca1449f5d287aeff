package scaleout

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// Addressing (all inside 198.18.0.0/15). testnet's one-arm segment is 198.18.0.0/24: LBs
// .2, .3, .4, backends .11.., the VIP .100. The router joins it as .50 and has the client
// on a subnet of its own behind it.
var (
	routerAddr   = netip.MustParsePrefix("198.18.0.50/24")
	routerCliGW  = netip.MustParsePrefix("198.18.20.1/24")
	clientAddr   = netip.MustParsePrefix("198.18.20.2/24")
	clientSubnet = netip.MustParsePrefix("198.18.20.0/24")
	// IPv6 (2001:2::/48): the segment is 2001:2::/64 (LB i at ::2+i, VIP ::100).
	routerAddr6   = netip.MustParsePrefix("2001:2::50/64")
	routerCliGW6  = netip.MustParsePrefix("2001:2:0:20::1/64")
	clientAddr6   = netip.MustParsePrefix("2001:2:0:20::2/64")
	clientSubnet6 = netip.MustParsePrefix("2001:2:0:20::/64")
)

const (
	routerAS = 65000
	lbAS     = 65001
	holdTime = 3 // seconds: the smallest BGP allows; a killed LB is noticed after it
)

// cluster is the topology: testnet's one-arm net with N LB namespaces and the backends,
// plus a router namespace running BIRD and a client namespace behind it.
type cluster struct {
	t      *testing.T
	tn     *lab.Net
	router *lab.NS
	client *lab.NS
	bin    string // the xlb binary
	dir    string
	lbs    []*lbProc
}

// lbProc is one `xlb run` process in an LB namespace.
type lbProc struct {
	host   *lab.Host
	cfg    string
	socket string // its API socket
	cmd    *exec.Cmd
	exited chan error
	logs   *testnet.Output
}

// veth makes a veth pair: a in ns (with address pa, if valid), b in nsB.
func veth(t *testing.T, ns *lab.NS, a string, nsB *lab.NS, b string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: 1500}, PeerName: b,
		PeerNamespace: netlink.NsFd(int(nsB.NsHandle()))}
	if err := ns.Handle().LinkAdd(v); err != nil {
		t.Fatalf("%s: veth %s<->%s: %v", ns.Name(), a, b, err)
	}
}

func linkUp(t *testing.T, ns *lab.NS, name string) {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err == nil {
		err = ns.OffloadsOff(name)
	}
	if err == nil {
		err = ns.Handle().LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("%s: %s up: %v", ns.Name(), name, err)
	}
}

// waitOperUp waits until the links are operationally up (a fresh veth drops packets until
// the kernel's deferred link-watch step gives it a qdisc).
func waitOperUp(t *testing.T, links map[*lab.NS][]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ns, names := range links {
		for _, name := range names {
			for {
				l, err := ns.Handle().LinkByName(name)
				if err == nil && l.Attrs().OperState == netlink.OperUp {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s not up", ns.Name(), name)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// newCluster builds the namespaces, starts BIRD and builds the xlb binary. No xlb runs yet.
func newCluster(t *testing.T, lbs, backends int) *cluster {
	t.Helper()
	birdPath, err := exec.LookPath("bird")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/bird"); serr != nil {
			t.Skip("BIRD 2 (Debian package bird2) is not installed: it is the router of this test")
		}
		birdPath = "/usr/sbin/bird"
	}
	tn := testnet.New(t, lab.Config{LBs: lbs, Backends: backends, NoVIPOnLB: true})
	c := &cluster{t: t, tn: tn, dir: t.TempDir()}

	// Build the binary while the namespaces are made.
	built := make(chan error, 1)
	c.bin = filepath.Join(c.dir, "xlb")
	go func() {
		out, err := exec.Command("go", "build", "-o", c.bin, "github.com/xlb-dev/xlb/cmd/xlb").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build: %w\n%s", err, out)
		}
		built <- err
	}()

	for _, role := range []string{"rt", "cl"} {
		ns, err := lab.NewNS(tn.ID, role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		if role == "rt" {
			c.router = ns
		} else {
			c.client = ns
		}
	}
	// Router eth0 on the LB segment (a port of testnet's bridge), eth1 to the client.
	veth(t, c.router, "eth0", tn.Switch, "rt")
	br, err := tn.Switch.Handle().LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	port, err := tn.Switch.Handle().LinkByName("rt")
	if err == nil {
		err = tn.Switch.Handle().LinkSetMaster(port, br)
	}
	if err != nil {
		t.Fatalf("plug the router into br0: %v", err)
	}
	linkUp(t, tn.Switch, "rt")
	veth(t, c.router, "eth1", c.client, "eth0")
	for _, name := range []string{"eth0", "eth1"} {
		linkUp(t, c.router, name)
	}
	linkUp(t, c.client, "eth0")
	must(t, c.router.AddAddr("eth0", routerAddr))
	must(t, c.router.AddAddr("eth1", routerCliGW))
	must(t, c.client.AddAddr("eth0", clientAddr))
	must(t, c.client.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), routerCliGW.Addr(), "eth0"))
	must(t, c.router.AddAddr("eth0", routerAddr6))
	must(t, c.router.AddAddr("eth1", routerCliGW6))
	must(t, c.client.AddAddr("eth0", clientAddr6))
	must(t, c.client.AddRoute(netip.MustParsePrefix("::/0"), routerCliGW6.Addr(), "eth0"))
	// ECMP over the LBs with an L4 hash, so flows from one client spread by source port.
	must(t, c.router.Sysctls(map[string]string{
		"net.ipv4.ip_forward":                "1",
		"net.ipv4.fib_multipath_hash_policy": "1",
		"net.ipv6.conf.all.forwarding":       "1",
		"net.ipv6.fib_multipath_hash_policy": "1",
	}))
	// DR: the backends answer the client straight through the router.
	for _, b := range tn.Backends {
		must(t, b.AddRoute(clientSubnet, routerAddr.Addr(), "eth0"))
		must(t, b.AddRoute(clientSubnet6, routerAddr6.Addr(), "eth0"))
	}
	waitOperUp(t, map[*lab.NS][]string{c.router: {"eth0", "eth1"}, c.client: {"eth0"}, tn.Switch: {"rt"}})
	c.startBIRD(birdPath, lbs)
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	return c
}

// startBIRD runs BIRD in the router namespace with its config, socket and pid file in a
// temp dir: passive eBGP sessions with every LB, hold time 3s, and every best path of
// equal rank merged into one ECMP route in the kernel table.
func (c *cluster) startBIRD(path string, lbs int) {
	t := c.t
	dir := filepath.Join(c.dir, "bird")
	must(t, os.MkdirAll(dir, 0o700))
	var conf strings.Builder
	fmt.Fprintf(&conf, `router id %s;
log "%s/bird.log" all;
protocol device { scan time 10; }
protocol kernel {
	ipv4 { import none; export all; };
	merge paths on;
}
protocol kernel {
	ipv6 { import none; export all; };
	merge paths on;
}
template bgp lb {
	local %s as %d;
	passive on;
	hold time %d;
	keepalive time 1;
	connect retry time 1;
	error wait time 1, 2;
	ipv4 { import all; export none; };
	ipv6 { import all; export none; };
}
`, routerAddr.Addr(), dir, routerAddr.Addr(), routerAS, holdTime)
	for i, lb := range c.tn.LBs[:lbs] {
		fmt.Fprintf(&conf, "protocol bgp lb%d from lb { neighbor %s as %d; }\n", i, lb.Addr(), lbAS)
	}
	cf := filepath.Join(dir, "bird.conf")
	must(t, os.WriteFile(cf, []byte(conf.String()), 0o600))
	logs := &testnet.Output{}
	cmd := exec.Command(path, "-f", "-c", cf, "-s", filepath.Join(dir, "bird.ctl"), "-P", filepath.Join(dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = logs, logs
	must(t, c.router.Start(cmd))
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Only BIRD's own PID (NS.Close would kill its process group as well).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		// SCALEOUT_BIRDLOG=1 shows BIRD's log of a passing run too (when sessions dropped).
		if t.Failed() || os.Getenv("SCALEOUT_BIRDLOG") != "" {
			b, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			t.Logf("bird output:\n%s\nbird.log:\n%s", logs.String(), b)
		}
	})
	time.Sleep(100 * time.Millisecond)
	select {
	case <-exited:
		t.Fatalf("bird exited at once:\n%s", logs.String())
	default:
	}
}

// birdc runs a BIRD command (for the logs of a failed test).
func (c *cluster) birdc(cmd ...string) string {
	out, err := c.router.Run("birdc", append([]string{"-s", filepath.Join(c.dir, "bird", "bird.ctl")}, cmd...)...)
	if err != nil {
		return fmt.Sprintf("birdc %v: %v %s", cmd, err, out)
	}
	return string(out)
}

// gateways returns the router's kernel next hops for the VIP (v4) or VIP6, sorted.
func (c *cluster) gateways(v6 bool) []string {
	vip, fam := c.tn.VIP, netlink.FAMILY_V4
	if v6 {
		vip, fam = c.tn.VIP6, netlink.FAMILY_V6
	}
	routes, err := c.router.Handle().RouteListFiltered(fam,
		&netlink.Route{Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())}}, netlink.RT_FILTER_DST)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range routes {
		if r.Gw != nil {
			out = append(out, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			out = append(out, nh.Gw.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitGateways waits until the router routes both VIPs (IPv4 and IPv6) over exactly the
// given LBs and returns how long it took for each.
func (c *cluster) waitGateways(what string, lbs ...int) (v4, v6 time.Duration) {
	c.t.Helper()
	var want, want6 []string
	for _, i := range lbs {
		want = append(want, c.tn.LBs[i].Addr().String())
		want6 = append(want6, c.tn.LBs[i].Addr6().String())
	}
	slices.Sort(want)
	slices.Sort(want6)
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for v4 == 0 || v6 == 0 {
		got, got6 := c.gateways(false), c.gateways(true)
		if v4 == 0 && slices.Equal(got, want) {
			v4 = max(time.Since(start), 1)
		}
		if v6 == 0 && slices.Equal(got6, want6) {
			v6 = max(time.Since(start), 1)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: the router routes the VIPs via %v and %v, want %v and %v\n%s", what, got, got6, want, want6,
				c.birdc("show", "protocols"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v4, v6
}

// lbConfig is LB i's xlb configuration: one DR service over every backend, HTTP health
// checks, and BGP with the router.
// socket is LB i's API socket (each xlb run needs its own).
func (c *cluster) socket(i int) string { return filepath.Join(c.dir, fmt.Sprintf("lb%d.sock", i)) }

func (c *cluster) lbConfig(i int) string {
	lb := c.tn.LBs[i]
	var y strings.Builder
	y.WriteString("interfaces: [{name: eth0}]\nservices:\n")
	for _, svc := range []struct {
		name string
		vip  netip.Addr
		v6   bool
	}{{"web", c.tn.VIP, false}, {"web6", c.tn.VIP6, true}} {
		fmt.Fprintf(&y, "  - name: %s\n    vip: %s\n    port: 80\n    method: dr\n    scheduler: maglev\n    backends:\n", svc.name, svc.vip)
		for _, b := range c.tn.Backends {
			addr := b.Addr()
			if svc.v6 {
				addr = b.Addr6()
			}
			fmt.Fprintf(&y, "      - {name: %s, address: %s}\n", b.Name, addr)
		}
		y.WriteString("    health: {kind: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2}\n")
	}
	fmt.Fprintf(&y, "bgp:\n  local_as: %d\n  router_id: %s\n  next_hop: %s\n  next_hop6: %s\n  withdraw_wait: 1s\n"+
		"  neighbors: [{address: %s, as: %d, hold_time: %ds}]\n",
		lbAS, lb.Addr(), lb.Addr(), lb.Addr6(), routerAddr.Addr(), routerAS, holdTime)
	fmt.Fprintf(&y, "api: {socket: %s}\n", c.socket(i))
	return y.String()
}

// startLB starts `xlb run` in LB i's namespace.
func (c *cluster) startLB(i int) *lbProc {
	t := c.t
	t.Helper()
	for len(c.lbs) <= i {
		c.lbs = append(c.lbs, nil)
	}
	p := &lbProc{host: c.tn.LBs[i], cfg: filepath.Join(c.dir, fmt.Sprintf("lb%d.yaml", i)), socket: c.socket(i),
		exited: make(chan error, 1), logs: &testnet.Output{}}
	must(t, os.WriteFile(p.cfg, []byte(c.lbConfig(i)), 0o600))
	p.cmd = exec.Command(c.bin, "run", "--config", p.cfg, "--replace-xdp")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	must(t, p.host.Start(p.cmd))
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("lb%d (%s) log:\n%s", i, p.host.Name(), p.logs.String())
		}
	})
	c.lbs[i] = p
	return p
}

// ctl runs `xlb ctl --json ARGS` in the LB's namespace and decodes the answer into out.
func (c *cluster) ctl(p *lbProc, out any, args ...string) error {
	b, err := p.host.Run(c.bin, append([]string{"ctl", "--socket", p.socket, "--json", "--timeout", "3s"}, args...)...)
	if err != nil {
		return fmt.Errorf("%s: xlb ctl %v: %w: %s", p.host.Name(), args, err, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// api is a client of the LB's API, dialled inside its namespace.
func (p *lbProc) api() *control.Client {
	return &control.Client{Base: "http://" + config.DefaultAPIListen,
		HTTP: p.host.HTTPClient(lab.ClientOptions{Timeout: 3 * time.Second})}
}

// rx returns the frames the LB's workers received so far (-1 when it does not answer).
func (c *cluster) rx(p *lbProc) int64 {
	raw, err := p.api().Raw(context.Background(), "/counters")
	var ws []dataplane.WorkerStats
	if err != nil || json.Unmarshal(raw, &ws) != nil {
		return -1
	}
	var n uint64
	for _, w := range ws {
		n += w.Counters.RxPackets
	}
	return int64(n)
}

// waitUp waits until each of the LB's services has n active backends.
func (c *cluster) waitUp(p *lbProc, n int) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		svcs, err := p.api().Services(context.Background())
		if err == nil && len(svcs) == 2 && svcs[0].Up == n && svcs[1].Up == n {
			return
		}
		select {
		case err := <-p.exited:
			c.t.Fatalf("%s: xlb run exited: %v\n%s", p.host.Name(), err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: %d backends not up: %+v", p.host.Name(), n, svcs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hang makes LB i a dead host: the switch drops every frame to and from its port (its MAC
// stays in the bridge's table, so nothing is flooded elsewhere). Killing its process then
// sends nothing either: the router notices only when the hold time runs out.
func (c *cluster) hang(i int, on bool) {
	c.t.Helper()
	port := c.tn.LBs[i].Ifaces[0].Peer
	table := fmt.Sprintf("xlbscaleout%d", i)
	rules := fmt.Sprintf("table bridge %s {\n\tchain hung {\n\t\ttype filter hook forward priority 0; policy accept;\n"+
		"\t\tiifname %q drop\n\t\toifname %q drop\n\t}\n}\n", table, port, port)
	args := []string{"delete", "table", "bridge", table}
	if on {
		f := filepath.Join(c.dir, table+".nft")
		must(c.t, os.WriteFile(f, []byte(rules), 0o600))
		args = []string{"-f", f}
	}
	if out, err := c.tn.Switch.Run("nft", args...); err != nil {
		c.t.Fatalf("nft %v: %v %s", args, err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
