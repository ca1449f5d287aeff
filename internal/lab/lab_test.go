package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"
)

func ping(t *testing.T, from *NS, to netip.Addr) {
	t.Helper()
	out, err := from.Run("ping", "-n", "-c", "1", "-W", "2", to.String())
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", to, from.Name(), err, out)
	}
}

func leftovers(id string) []string {
	m, _ := filepath.Glob(filepath.Join(netnsDir, "xlb-"+id+"-*"))
	return m
}

func getName(t *testing.T, c *NS, url string) string {
	t.Helper()
	name, err := Get(context.Background(), c.HTTPClient(ClientOptions{}), url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return name
}

func TestOneArm(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 3, LBs: 2})
	if got := len(n.Namespaces()); got != 7 {
		t.Fatalf("namespaces = %d, want 7 (sw, client, lb, lb1, 3 backends)", got)
	}
	if n.LBs[1].Addr() != netip.MustParseAddr("198.18.0.3") || n.LBs[1].Name() != "xlb-"+n.ID+"-lb1" {
		t.Errorf("second LB: %s %s", n.LBs[1].Name(), n.LBs[1].Addr())
	}
	ping(t, n.Client.NS, n.LBs[1].Addr6())
	for _, ns := range n.Namespaces() {
		if !strings.HasPrefix(ns.Name(), "xlb-"+n.ID+"-") {
			t.Errorf("namespace %q lacks prefix xlb-%s-", ns.Name(), n.ID)
		}
	}
	ping(t, n.Client.NS, n.LB.Addr())
	ping(t, n.Client.NS, n.LB.Addr6())
	for _, b := range n.Backends {
		ping(t, n.Client.NS, b.Addr())
		ping(t, n.Client.NS, b.Addr6())
		if got := getName(t, n.Client.NS, "http://"+b.Addr().String()+"/"); got != b.Name {
			t.Errorf("GET %s answered %q, want %q", b.Addr(), got, b.Name)
		}
		if got := getName(t, n.Client.NS, "http://["+b.Addr6().String()+"]/"); got != b.Name {
			t.Errorf("GET %s answered %q, want %q", b.Addr6(), got, b.Name)
		}
	}
	// The VIP is on every backend's lo, but only the LB may answer ARP/NDP for it: watch
	// every frame the backends send while the client resolves the VIPs.
	var raws []*Raw
	for _, b := range n.Backends {
		r, err := b.RawSocket("eth0")
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, r)
	}
	ping(t, n.Client.NS, n.VIP)
	ping(t, n.Client.NS, n.VIP6)
	for i, r := range raws {
		if bad := vipAnswers(r, n.VIP, n.VIP6); bad != "" {
			t.Errorf("backend %s answered for the VIP: %s", n.Backends[i].Name, bad)
		}
	}
	lbMAC := n.LB.Ifaces[0].MAC.String()
	for _, vip := range []netip.Addr{n.VIP, n.VIP6} {
		mac, err := n.Client.Neighbor("eth0", vip)
		if err != nil || mac.String() != lbMAC {
			t.Errorf("client's neighbour entry for %s = %v (%v), want the LB's %s", vip, mac, err, lbMAC)
		}
	}
	// Checks of the per-namespace settings.
	b := n.Backends[0]
	for k, want := range map[string]string{"net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"} {
		if got, err := b.ReadSysctl(k); err != nil || got != want {
			t.Errorf("backend %s = %q (%v), want %s", k, got, err, want)
		}
	}
	if got, err := n.Client.ReadSysctl("net.ipv4.conf.eth0.arp_ignore"); err != nil || got != "0" {
		t.Errorf("client arp_ignore = %q (%v): sysctls leaked between namespaces", got, err)
	}
	for _, h := range []*Host{n.Client, n.LB, b.Host} {
		on, err := h.TxChecksumOn("eth0")
		if err != nil || on {
			t.Errorf("%s eth0 tx checksum offload on=%v (%v), want off", h.Name(), on, err)
		}
	}
	id := n.ID
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if l := leftovers(id); len(l) > 0 {
		t.Fatalf("namespaces left after Close: %v", l)
	}
}

// vipAnswers drains r and describes the first ARP reply or neighbour advertisement the
// interface sent for vip or vip6 ("" when there is none).
func vipAnswers(r *Raw, vip, vip6 netip.Addr) string {
	buf := make([]byte, 2048)
	for {
		m, out, err := r.Recv(buf, 50*time.Millisecond)
		if err != nil {
			return ""
		}
		if !out {
			continue
		}
		p := gopacket.NewPacket(buf[:m], layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPReply &&
			netip.AddrFrom4([4]byte(a.SourceProtAddress)) == vip {
			return "ARP reply " + p.String()
		}
		if na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement); ok {
			if tgt, _ := netip.AddrFromSlice(na.TargetAddress); tgt == vip6 {
				return "neighbour advertisement " + p.String()
			}
		}
	}
}

func TestTwoArm(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Kind: TwoArm, Backends: 2, MTU: 1400, Queues: 2})
	if len(n.LBIfaces()) != 2 || n.LBIfaces()[1].Name != "eth1" {
		t.Fatalf("LB interfaces = %+v, want eth0 and eth1", n.LBIfaces())
	}
	for _, h := range []*Host{n.Client, n.LB, n.Backends[1].Host} {
		for _, ifc := range h.Ifaces {
			l, err := h.Handle().LinkByName(ifc.Name)
			if err != nil {
				t.Fatal(err)
			}
			if a := l.Attrs(); a.MTU != 1400 || a.NumRxQueues != 2 || a.NumTxQueues != 2 || ifc.Queues != 2 {
				t.Errorf("%s %s: mtu %d, queues rx %d tx %d (Iface says %d), want 1400 and 2", h.Name(), ifc.Name, a.MTU, a.NumRxQueues, a.NumTxQueues, ifc.Queues)
			}
		}
	}
	ping(t, n.Client.NS, n.LB.Addr())
	// The MTU holds on the path: 1372 bytes of ICMP payload + 28 = 1400 pass unfragmented,
	// one more does not.
	if out, err := n.Client.Run("ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1372", n.LB.Addr().String()); err != nil {
		t.Errorf("1400-byte ping: %v\n%s", err, out)
	}
	if _, err := n.Client.Run("ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1373", n.LB.Addr().String()); err == nil {
		t.Error("1401-byte ping with DF passed a 1400 MTU")
	}
	for _, b := range n.Backends {
		if !strings.HasPrefix(b.Addr().String(), "198.19.1.") {
			t.Errorf("backend address %s not on net B", b.Addr())
		}
		// Routed through the LB's kernel (no dataplane runs here).
		ping(t, n.Client.NS, b.Addr())
		ping(t, n.Client.NS, b.Addr6())
		if got := getName(t, n.Client.NS, "http://"+b.Addr().String()+"/"); got != b.Name {
			t.Errorf("GET %s answered %q, want %q", b.Addr(), got, b.Name)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(n.ID); len(l) > 0 {
		t.Fatalf("namespaces left after Close: %v", l)
	}
}

// A client can dial from any address of its pool; the backend sees that source and its
// reply comes back (routed to the client), in both topologies.
func TestClientPool(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{OneArm, TwoArm} {
		n := newNet(t, Config{Kind: k, Backends: 1, NoHTTP: true})
		b := n.Backends[0]
		l, err := b.Listen("tcp", ":9000")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()))
				c.Close()
			}
		}()
		for _, src := range []netip.Addr{netip.MustParseAddr("198.18.64.77"), netip.MustParseAddr("198.18.127.254"), netip.MustParseAddr("2001:2:0:4abc::9")} {
			if !n.ClientPool.Contains(src) && !n.ClientPool6.Contains(src) {
				t.Fatalf("%s not in the pools %s %s", src, n.ClientPool, n.ClientPool6)
			}
			dst := b.Addr()
			if src.Is6() {
				dst = b.Addr6()
			}
			d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := n.Client.DialWith(ctx, d, "tcp", netip.AddrPortFrom(dst, 9000).String())
			cancel()
			if err != nil {
				t.Fatalf("%v: dial from %s: %v", k, src, err)
			}
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			m, _ := c.Read(buf)
			c.Close()
			if string(buf[:m]) != src.String() {
				t.Errorf("%v: backend saw source %q, want %s", k, buf[:m], src)
			}
		}
	}
}

func TestSpreadParallel(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1})
	b := n.Backends[0]
	c := n.Client.HTTPClient(ClientOptions{KeepAlive: true})
	tl := SpreadParallel(context.Background(), c, "http://"+b.Addr().String()+"/", 25, 4, 10*time.Second)
	if tl.OK != 25 || tl.Failed != 0 || tl.ByBackend[b.Name] != 25 || b.HTTP.Requests() != 25 {
		t.Fatalf("%v, server counted %d", tl, b.HTTP.Requests())
	}
}

func TestIPv4Only(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1, DisableIPv6: true, NoHTTP: true})
	if err := n.Backends[0].Kill(); !errors.Is(err, ErrNoHTTP) {
		t.Errorf("Kill without a server: %v, want ErrNoHTTP", err)
	}
	s, err := n.Backends[0].ServeHTTP("b0", 80)
	if err != nil {
		t.Fatal(err)
	}
	n.Backends[0].HTTP = s
	if n.VIP6.IsValid() || n.Client.Addr6().IsValid() || n.ClientPool6.IsValid() {
		t.Errorf("IPv6 configured: VIP6 %v client %v pool %v", n.VIP6, n.Client.Addr6(), n.ClientPool6)
	}
	ping(t, n.Client.NS, n.Backends[0].Addr())
	if got := getName(t, n.Client.NS, "http://"+n.Backends[0].Addr().String()+"/"); got != "b0" {
		t.Errorf("GET answered %q", got)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{{Backends: -1}, {Backends: MaxBackends + 1}, {MTU: 100}, {Kind: 7}, {Kind: TwoArm, LBs: 2}, {Queues: 17}} {
		if _, err := Build(c); !errors.Is(err, ErrConfig) {
			t.Errorf("Build(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

func TestKillRevive(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1})
	b := n.Backends[0]
	c := n.Client.HTTPClient(ClientOptions{KeepAlive: true, Timeout: 3 * time.Second})
	url := "http://" + b.Addr().String() + "/"
	tl := Spread(context.Background(), c, url, 5, 5*time.Second)
	if tl.OK != 5 || tl.ByBackend[b.Name] != 5 {
		t.Fatalf("alive: %v", tl)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if b.HTTP.Alive() {
		t.Fatal("Alive after Kill")
	}
	tl = Spread(context.Background(), c, url, 3, 5*time.Second)
	if tl.OK != 0 || tl.Failed != 3 {
		t.Fatalf("killed: %v", tl)
	}
	if tl.Errors["connection refused"] != 3 {
		t.Errorf("killed backend errors = %v, want connection refused", tl.Errors)
	}
	if err := b.Revive(); err != nil {
		t.Fatal(err)
	}
	b.HTTP.SetHealthy(false)
	if _, err := Get(context.Background(), c, "http://"+b.Addr().String()+"/healthz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("unhealthy /healthz: %v, want status 503", err)
	}
	tl = Spread(context.Background(), c, url, 4, 5*time.Second)
	if tl.OK != 4 {
		t.Fatalf("revived: %v", tl)
	}
	if got := b.HTTP.Requests(); got != 9 {
		t.Errorf("requests = %d, want 9", got)
	}
}

// A slow backend and an unplugged one: the first answers late, the second not at all
// (a timeout, not a refusal) until it is plugged back in.
func TestSlowAndUnplugged(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1})
	b := n.Backends[0]
	url := "http://" + b.Addr().String() + "/healthz"
	c := n.Client.HTTPClient(ClientOptions{Timeout: 300 * time.Millisecond})
	b.HTTP.SetDelay(time.Second)
	if _, err := Get(context.Background(), c, url); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("slow backend: %v, want a client timeout", err)
	}
	b.HTTP.SetDelay(0)
	if _, err := Get(context.Background(), n.Client.HTTPClient(ClientOptions{Timeout: 3 * time.Second}), url); err != nil {
		t.Fatalf("after SetDelay(0): %v", err)
	}
	if err := n.Unplug(b.Host); err != nil {
		t.Fatal(err)
	}
	fresh := n.Client.HTTPClient(ClientOptions{Timeout: 300 * time.Millisecond})
	_, err := Get(context.Background(), fresh, url)
	if err == nil || strings.Contains(err.Error(), "refused") {
		t.Errorf("unplugged backend: %v, want a timeout", err)
	}
	if err := n.Plug(b.Host); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(context.Background(), n.Client.HTTPClient(ClientOptions{Timeout: 3 * time.Second}), url); err != nil {
		t.Errorf("plugged back: %v", err)
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	skipUnlessLab(t)
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNS(id, "do")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, _ := netns.Get()
	defer before.Close()
	var inside netns.NsHandle
	if err := ns.Do(func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	after, _ := netns.Get()
	defer after.Close()
	if !inside.Equal(ns.NsHandle()) || inside.Equal(before) {
		t.Error("Do did not run in the namespace")
	}
	if !after.Equal(before) {
		t.Error("Do did not restore the thread's namespace")
	}
	want := errors.New("boom")
	if err := ns.Do(func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestStartKilledOnClose(t *testing.T) {
	skipUnlessLab(t)
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNS(id, "proc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	// The child must see the namespace's interfaces: only lo.
	out, err := ns.Run("cat", "/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), ":") != 1 || !strings.Contains(string(out), "lo:") {
		t.Fatalf("child does not run in the namespace; /proc/net/dev:\n%s", out)
	}
	cmd := ns.Command("sleep", "60")
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there after Close (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Close: %v", ns.Path(), err)
	}
	if err := ns.Start(ns.Command("true")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
}

// eventually polls f for up to 2s until it returns want, and returns its last value.
func eventually(f func() int, want int) int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := f()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1, NoHTTP: true})
	b := n.Backends[0]
	te, err := b.ServeTCPEcho(":7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ServeUDPEcho(":7"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []netip.Addr{b.Addr(), b.Addr6()} {
		for _, network := range []string{"tcp", "udp"} {
			addr := net.JoinHostPort(a.String(), "7")
			c, err := n.Client.Dial(ctx, network, addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			msg := fmt.Sprintf("hello %s %s", network, a)
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			m, err := c.Read(buf)
			if err != nil || string(buf[:m]) != msg {
				t.Errorf("%s echo from %s: %q, %v", network, addr, buf[:m], err)
			}
			c.Close()
		}
	}
	// A long-lived connection: counted while open, alive across roundtrips, gone after
	// the server closes it.
	ctx2, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := n.Client.Dial(ctx2, "tcp", net.JoinHostPort(b.Addr().String(), "7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		if err := Roundtrip(c, []byte(fmt.Sprint("ping ", i)), 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// The earlier connections were closed by the client; the server notices at once or
	// a moment later.
	if got := eventually(te.Active, 1); got != 1 {
		t.Errorf("Active = %d, want 1", got)
	}
	if err := te.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Roundtrip(c, []byte("after close"), 2*time.Second); err == nil {
		t.Error("roundtrip succeeded after the echo server closed")
	}
	if got := te.Active(); got != 0 {
		t.Errorf("Active after Close = %d, want 0", got)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Kind: TwoArm, Backends: 2})
	d := n.Describe()
	for _, want := range []string{n.LB.Name(), "eth1", "198.19.1.12/24", "2001:2:0:101::11/64", n.Backends[1].Ifaces[0].MAC.String(), "VIP 198.18.1.100, 2001:2:0:1::100"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
	if n.Backend("b1") != n.Backends[1] || n.Backend("b9") != nil {
		t.Error("Backend lookup by name")
	}
	t.Log("\n" + d)
}

// Two LBs without the VIP (as a VRRP test starts): nobody answers for it until one LB
// takes it, and then the client resolves it to that LB.
func TestNoVIPOnLB(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1, LBs: 2, NoVIPOnLB: true})
	for _, lb := range n.LBs {
		l, err := lb.Handle().LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := lb.Handle().AddrList(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ip, _ := netip.AddrFromSlice(a.IP); ip.Unmap() == n.VIP || ip == n.VIP6 {
				t.Errorf("%s has the VIP %s", lb.Name(), ip)
			}
		}
	}
	if _, err := n.Client.Run("ping", "-n", "-c", "1", "-W", "1", n.VIP.String()); err == nil {
		t.Fatal("the VIP answered with no LB holding it")
	}
	standby := n.LBs[1]
	if err := standby.AddAddr("eth0", netip.PrefixFrom(n.VIP, 32)); err != nil {
		t.Fatal(err)
	}
	// The failed ping left an INCOMPLETE/FAILED entry; the next ping resolves again.
	ping(t, n.Client.NS, n.VIP)
	if mac, err := n.Client.Neighbor("eth0", n.VIP); err != nil || mac.String() != standby.Ifaces[0].MAC.String() {
		t.Errorf("client resolves the VIP to %v (%v), want %s's %s", mac, err, standby.Name(), standby.Ifaces[0].MAC)
	}
}

// TestCloseAfterListenerClosed: a listener the test already closed is not an error of
// NS.Close.
func TestCloseAfterListenerClosed(t *testing.T) {
	skipUnlessLab(t)
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNS(id, "lst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ns.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
