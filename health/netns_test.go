package health

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the two-namespace topology (RFC 2544 benchmarking range only).
var (
	probeAddr = netip.MustParsePrefix("198.18.77.1/24")
	beAddr    = netip.MustParsePrefix("198.18.77.2/24")
	vipAddr   = netip.MustParseAddr("198.18.99.100") // outside the veth subnet: no route to it
	deadAddr  = netip.MustParseAddr("198.18.77.99")  // in the subnet, owned by nobody
)

const backendEnv = "XLB_HEALTH_TEST_BACKEND"

// TestMain doubles as the backend server process of the namespace tests: with backendEnv set
// it serves HTTP on that address until killed.
func TestMain(m *testing.M) {
	if addr := os.Getenv(backendEnv); addr != "" {
		os.Exit(serveBackend(addr))
	}
	os.Exit(m.Run())
}

func serveBackend(addr string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	err = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// pair is two namespaces joined by a veth: "probe" runs the Monitor, "be" the backend.
type pair struct {
	probe, be       string // namespace names
	probeNS, beNS   netns.NsHandle
	probeRun, beRun func(func() error) error
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
}

// newPair builds the topology and removes it in t.Cleanup.
func newPair(t *testing.T) *pair {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	p := &pair{probe: "xlb-" + id + "-probe", be: "xlb-" + id + "-be"}

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	p.probeNS, err = netns.NewNamed(p.probe)
	if err == nil {
		p.beNS, err = netns.NewNamed(p.be)
	}
	serr := netns.Set(orig)
	orig.Close()
	if serr != nil {
		t.Fatalf("return to own netns: %v", serr) // the thread stays locked and dies with the test
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() {
		p.probeNS.Close()
		p.beNS.Close()
		_ = netns.DeleteNamed(p.probe)
		_ = netns.DeleteNamed(p.be)
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot create network namespaces: %v", err)
		}
		t.Fatal(err)
	}
	p.probeRun, p.beRun = InNetns("/run/netns/"+p.probe), InNetns("/run/netns/"+p.be)

	hp, err := netlink.NewHandleAt(p.probeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()
	hb, err := netlink.NewHandleAt(p.beNS)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "p0"}, PeerName: "b0", PeerNamespace: netlink.NsFd(p.beNS)}
	if err := hp.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		dev  string
		addr netip.Prefix
		run  func(func() error) error
	}{{hp, "p0", probeAddr, p.probeRun}, {hb, "b0", beAddr, p.beRun}} {
		for _, name := range []string{"lo", side.dev} {
			l, err := side.h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == side.dev {
				a := &netlink.Addr{IPNet: &net.IPNet{IP: side.addr.Addr().AsSlice(), Mask: net.CIDRMask(side.addr.Bits(), 32)}}
				if err := side.h.AddrAdd(l, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := side.h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		// Senders leave no checksum to offload (the project's rule for test networks).
		err := side.run(func() error {
			out, err := exec.Command("ethtool", "-K", side.dev, "tx", "off").CombinedOutput()
			if err != nil {
				return fmt.Errorf("ethtool -K %s tx off: %w: %s", side.dev, err, out)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// backend is the HTTP server process in the "be" namespace.
type backend struct {
	cmd *exec.Cmd
}

// startBackend starts the test binary as an HTTP server on addr inside the be namespace
// (the child inherits the netns of the thread that forks it) and waits until it listens.
func (p *pair) startBackend(t *testing.T, addr string) *backend {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), backendEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.beRun(cmd.Start); err != nil {
		t.Fatal(err)
	}
	b := &backend{cmd: cmd}
	t.Cleanup(b.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("backend did not start: %q %v", line, err)
	}
	return b
}

// kill SIGKILLs the backend and reaps it; the kernel then refuses its port.
func (b *backend) kill() {
	if b.cmd.ProcessState != nil {
		return
	}
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// addrDel removes (or adds back) an address in a namespace.
func (p *pair) addr(t *testing.T, ns netns.NsHandle, dev string, a netip.Prefix, add bool) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	na := &netlink.Addr{IPNet: ipNet(a)}
	if add {
		err = h.AddrAdd(l, na)
	} else {
		err = h.AddrDel(l, na)
	}
	if err != nil {
		t.Fatalf("address %v on %s (add=%v): %v", a, dev, add, err)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
