package xdpprog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/xsk"
)

// vethNS moves the test goroutine, locked to its thread for good, into a new
// network namespace xlb-<id>-xdp with a veth pair xa/xb, removed in Cleanup.
func vethNS(t testing.TB) (xa, xb netlink.Link) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("current netns: %v", err)
	}
	var id [4]byte
	rand.Read(id[:])
	name := "xlb-" + hex.EncodeToString(id[:]) + "-xdp"
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		netns.Set(orig)
		orig.Close()
		ns.Close()
		netns.DeleteNamed(name)
	})
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xa"}, PeerName: "xb"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, n := range []string{"xa", "xb"} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	xa, _ = netlink.LinkByName("xa")
	xb, _ = netlink.LinkByName("xb")
	return xa, xb
}

func xdpProgID(t testing.TB, name string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

func TestAttachModesRefuseReplace(t *testing.T) {
	xa, _ := vethNS(t)
	idx := xa.Attrs().Index
	p, err := Attach(idx, Options{Mode: ModeNative})
	if err != nil {
		t.Fatalf("attach native on veth: %v", err)
	}
	if p.Mode() != ModeNative || xdpProgID(t, "xa") == 0 {
		t.Fatalf("mode %v, attached id %d", p.Mode(), xdpProgID(t, "xa"))
	}
	if _, err := Attach(idx, Options{}); !errors.Is(err, ErrAlreadyAttached) {
		t.Fatalf("second attach: %v, want ErrAlreadyAttached", err)
	}
	// Replace takes over from a program held by another bpf_link.
	q, err := Attach(idx, Options{Replace: true, Mode: ModeGeneric})
	if err != nil {
		t.Fatalf("attach with Replace: %v", err)
	}
	if q.Mode() != ModeGeneric {
		t.Fatalf("mode %v, want generic", q.Mode())
	}
	p.Close()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if id := xdpProgID(t, "xa"); id != 0 {
		t.Fatalf("program %d still attached after Close", id)
	}
	// A program attached through netlink (not a link) is refused, then replaced.
	r, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer r.Close()
	if err := netlink.LinkSetXdpFd(xa, r.objs.Xlb.FD()); err != nil {
		t.Fatalf("netlink attach: %v", err)
	}
	if _, err := Attach(idx, Options{}); !errors.Is(err, ErrAlreadyAttached) {
		t.Fatalf("attach over a netlink program: %v, want ErrAlreadyAttached", err)
	}
	s, err := Attach(idx, Options{Replace: true})
	if err != nil {
		t.Fatalf("replace a netlink program: %v", err)
	}
	if s.Mode() != ModeNative {
		t.Fatalf("auto mode on veth: %v, want native", s.Mode())
	}
	s.Close()
	if id := xdpProgID(t, "xa"); id != 0 {
		t.Fatalf("program %d still attached after Close", id)
	}
	if _, err := ParseMode("turbo"); !errors.Is(err, ErrMode) {
		t.Fatalf("ParseMode(turbo): %v", err)
	}
}

// TestRedirectToSocket registers a bound AF_XDP socket for queue 0 (the queue
// BPF_PROG_TEST_RUN runs on): a service packet is now XDP_REDIRECT, and a
// packet not for xlb still XDP_PASS.
func TestRedirectToSocket(t *testing.T) {
	xa, _ := vethNS(t)
	p := loaded(t)
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 64})
	if err != nil {
		t.Fatalf("NewUMEM: %v", err)
	}
	defer u.Close()
	s, err := xsk.Open(u, xsk.Config{Ifindex: xa.Attrs().Index})
	if err != nil {
		t.Fatalf("open af_xdp socket: %v", err)
	}
	defer s.Close()
	if err := p.RegisterSocket(0, s.FD()); err != nil {
		t.Fatalf("RegisterSocket: %v", err)
	}
	for _, c := range []struct {
		name    string
		frame   []byte
		verdict uint32
		reason  Reason
	}{
		{"service", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53), xdpRedirect, RedirectService},
		{"nat reply", tcp4(t, "198.18.1.5", "198.18.0.2", 8080, 40000), xdpRedirect, RedirectNAT},
		{"frag needed", icmp4Error(t, "198.18.0.10", 3, 4, udp4(t, "198.18.0.10", "198.18.0.2", 53, 9)[14:]), xdpRedirect, RedirectICMP},
		{"ipv6 fragment", ip6Frame("2001:db8::2", "2001:db8::10", []uint8{44}, 6, ports(1, 443)), xdpRedirect, RedirectFragment},
		{"not for xlb", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 99), xdpPass, PassNoMatch},
	} {
		if v, r := run(t, p, c.frame); v != c.verdict || r != c.reason {
			t.Errorf("%s: verdict %d reason %v, want %d %v", c.name, v, r, c.verdict, c.reason)
		}
	}
	if err := p.UnregisterSocket(0); err != nil {
		t.Fatalf("UnregisterSocket: %v", err)
	}
	if v, r := run(t, p, udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53)); v != xdpPass || r != PassNoSocket {
		t.Fatalf("after UnregisterSocket: verdict %d reason %v", v, r)
	}
	if err := p.RegisterSocket(MaxQueues, s.FD()); !errors.Is(err, ErrKey) {
		t.Fatalf("queue out of range: %v", err)
	}
}

func TestServiceMaps(t *testing.T) {
	p := loaded(t)
	vip := netip.MustParseAddr("198.18.0.10")
	// A second service on the same VIP keeps the VIP when the first goes.
	if err := p.AddService(Key{vip, 80, 6}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddService(Key{vip, 80, 6}); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := p.DeleteService(Key{vip, 53, 17}); err != nil {
		t.Fatal(err)
	}
	var one uint32
	vk := vipKey(vip)
	if err := p.objs.Vips.Lookup(&vk, &one); err != nil {
		t.Fatalf("vip gone while a service still uses it: %v", err)
	}
	if err := p.DeleteService(Key{vip, 80, 6}); err != nil {
		t.Fatal(err)
	}
	if err := p.objs.Vips.Lookup(&vk, &one); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("vip still there after its last service: %v", err)
	}
	if err := p.DeleteService(Key{vip, 80, 6}); err != nil {
		t.Fatalf("deleting a missing service: %v", err)
	}
	if v, r := run(t, p, udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53)); v != xdpPass || r != PassNoMatch {
		t.Fatalf("deleted service: verdict %d reason %v", v, r)
	}
	if err := p.DeleteNATBackend(Key{netip.MustParseAddr("198.18.1.5"), 8080, 6}); err != nil {
		t.Fatal(err)
	}
	if _, r := run(t, p, tcp4(t, "198.18.1.5", "198.18.0.2", 8080, 40000)); r != PassNoMatch {
		t.Fatalf("deleted nat backend: reason %v", r)
	}
	if err := p.AddService(Key{Addr: netip.Addr{}, Port: 1, Proto: 6}); !errors.Is(err, ErrKey) {
		t.Fatalf("invalid address: %v", err)
	}
	if err := p.AddService(Key{vip, 1, 0}); !errors.Is(err, ErrKey) {
		t.Fatalf("protocol 0: %v", err)
	}
	// IPv4-mapped IPv6 addresses are IPv4 keys.
	if err := p.AddService(Key{netip.MustParseAddr("::ffff:198.18.0.20"), 7, 17}); err != nil {
		t.Fatal(err)
	}
	if _, r := run(t, p, udp4(t, "198.18.0.2", "198.18.0.20", 1, 7)); r != PassNoSocket {
		t.Fatalf("4-in-6 mapped service: reason %v", r)
	}
	p.Close()
	if err := p.AddService(Key{vip, 1, 6}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// FuzzProgram runs the program on arbitrary frames: the verdict is always
// XDP_PASS (no socket is registered) and the kernel never reports an error.
func FuzzProgram(f *testing.F) {
	requireRoot(f)
	f.Add(udp4(f, "198.18.0.2", "198.18.0.10", 1234, 53))
	f.Add(icmp4Error(f, "198.18.0.10", 3, 4, udp4(f, "198.18.0.10", "198.18.0.2", 53, 9)[14:]))
	f.Add(ip6Frame("2001:db8::2", "2001:db8::10", []uint8{0, 60, 43, 51, 44}, 6, ports(5555, 443)))
	p := loaded(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			return
		}
		v, err := p.objs.Xlb.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if v != xdpPass {
			t.Fatalf("verdict %d", v)
		}
	})
}

// TestReplaceLeavesOtherNamespaces: interfaces in two network namespaces share an ifindex;
// replacing the netlink-attached program on one leaves the other's bpf_link alone (a link
// is matched by ifindex and program, not by ifindex only).
func TestReplaceLeavesOtherNamespaces(t *testing.T) {
	xaB, _ := vethNS(t) // namespace B: xlb's program through a bpf_link
	other, err := Attach(xaB.Attrs().Index, Options{Mode: ModeNative})
	if err != nil {
		t.Fatalf("attach in B: %v", err)
	}
	defer other.Close()
	nsB, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	otherID := xdpProgID(t, "xa")
	xaA, _ := vethNS(t) // namespace A (the thread is in it now): a netlink-attached program
	if xaA.Attrs().Index != xaB.Attrs().Index {
		t.Fatalf("xa has ifindex %d in A and %d in B: the test needs them equal", xaA.Attrs().Index, xaB.Attrs().Index)
	}
	r, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := netlink.LinkSetXdpFd(xaA, r.objs.Xlb.FD()); err != nil {
		t.Fatalf("netlink attach: %v", err)
	}
	s, err := Attach(xaA.Attrs().Index, Options{Replace: true})
	if err != nil {
		t.Fatalf("replace the netlink program in A: %v", err)
	}
	defer s.Close()
	if err := netns.Set(nsB); err != nil {
		t.Fatal(err)
	}
	if id := xdpProgID(t, "xa"); id != otherID {
		t.Fatalf("B's program: id %d, want %d still attached", id, otherID)
	}
}
