package xsk

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"golang.org/x/sys/unix"
)

// steer attaches the xlb program to l with a UDP service on vip:port and
// registers s for queue 0.
func steer(t testing.TB, l netlink.Link, vip string, port uint16, s *Socket) *xdpprog.Program {
	t.Helper()
	p, err := xdpprog.Attach(l.Attrs().Index, xdpprog.Options{})
	if err != nil {
		t.Fatalf("attach xlb to %s: %v", l.Attrs().Name, err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.AddService(xdpprog.Key{Addr: netip.MustParseAddr(vip), Port: port, Proto: unix.IPPROTO_UDP}); err != nil {
		t.Fatalf("add service: %v", err)
	}
	if s != nil {
		if err := p.RegisterSocket(s.Queue(), s.FD()); err != nil {
			t.Fatalf("register socket: %v", err)
		}
	}
	return p
}

func openSocket(t testing.TB, u *UMEM, l netlink.Link, cfg Config) *Socket {
	t.Helper()
	cfg.Ifindex = l.Attrs().Index
	s, err := Open(u, cfg)
	if err != nil {
		t.Fatalf("open af_xdp socket on %s: %v", l.Attrs().Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// receiveOne waits up to 2 s for one descriptor on s.
func receiveOne(t testing.TB, s *Socket) Desc {
	t.Helper()
	var d [1]Desc
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if s.Receive(d[:]) == 1 {
			return d[0]
		}
		if _, err := s.Poll(50 * time.Millisecond); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	t.Fatal("nothing arrived on the af_xdp socket within 2s")
	return Desc{}
}

func waitComplete(t testing.TB, s *Socket) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for s.InFlight() > 0 && time.Now().Before(deadline) {
		s.Kick()
		s.Complete()
		time.Sleep(time.Millisecond)
	}
	if s.InFlight() != 0 {
		t.Fatalf("%d frames not completed within 2s", s.InFlight())
	}
}

// TestVethBothWays receives a service packet from the peer of a veth on an
// AF_XDP socket (a non-service packet must stay with the kernel), sends it
// back with the MACs swapped, then sends one with 54 bytes prepended in the
// headroom.
func TestVethBothWays(t *testing.T) {
	links := vethNS(t, [2]string{"xa", "xb"})
	xa, xb := links["xa"], links["xb"]
	u := newTestUMEM(t, 256)
	s := openSocket(t, u, xa, Config{TxBudget: 64})
	t.Logf("zero copy: %v, tx budget in effect: %d", s.ZeroCopyOn(), s.TxBudget())
	prog := steer(t, xa, "198.18.0.1", 9000, s)
	t.Logf("xdp mode: %v", prog.Mode())
	if n := s.Fill(-1); n != 256 {
		t.Fatalf("Fill put %d frames on the fill ring, want 256", n)
	}
	peer := newPacketSock(t, xb)
	amac, bmac := xa.Attrs().HardwareAddr, xb.Attrs().HardwareAddr

	other := udpFrame(t, bmac, amac, "198.18.0.2", "198.18.0.1", 5000, 9001, []byte("not for xlb"))
	peer.send(t, other)
	want := udpFrame(t, bmac, amac, "198.18.0.2", "198.18.0.1", 5000, 9000, []byte("hello xlb"))
	peer.send(t, want)

	d := receiveOne(t, s)
	if off := u.Offset(d.Addr); off != u.RxOffset() || off != 256 {
		t.Fatalf("rx descriptor at offset %d, want %d", off, u.RxOffset())
	}
	frame := u.Frame(d.Addr)
	got := frame[u.Offset(d.Addr) : u.Offset(d.Addr)+int(d.Len)]
	if !bytes.Equal(got, want) {
		t.Fatalf("received\n%x\nwant\n%x", got, want)
	}
	var more [4]Desc
	time.Sleep(50 * time.Millisecond)
	if n := s.Receive(more[:]); n != 0 {
		t.Fatalf("%d more frames on the socket: the non-service packet was redirected", n)
	}

	// Back to the peer with the MACs swapped.
	copy(got[0:6], bmac)
	copy(got[6:12], amac)
	echo := append([]byte(nil), got...)
	if n := s.Transmit([]Desc{d}); n != 1 {
		t.Fatalf("Transmit: %d", n)
	}
	peer.recvMatch(t, func(b []byte) bool { return bytes.Equal(b, echo) })
	waitComplete(t, s)

	// Prepend 54 bytes (an Ethernet header and a 40-byte outer header) in the
	// headroom of a fresh frame, in front of a packet at RxOffset.
	addr, ok := u.Alloc()
	if !ok {
		t.Fatal("no free frame")
	}
	f := u.Frame(addr)
	inner := udpFrame(t, amac, bmac, "198.18.0.1", "198.18.0.2", 9000, 5000, []byte("inner"))
	copy(f[u.RxOffset():], inner[14:])
	start := u.RxOffset() - 54
	copy(f[start:], bmac)
	copy(f[start+6:], amac)
	f[start+12], f[start+13] = 0x86, 0xdd // an IPv6 ethertype: the peer only compares bytes
	for i := start + 14; i < u.RxOffset(); i++ {
		f[i] = byte(i)
	}
	out := append([]byte(nil), f[start:u.RxOffset()+len(inner)-14]...)
	if n := s.Transmit([]Desc{{Addr: u.Addr(addr, start), Len: uint32(len(out))}}); n != 1 {
		t.Fatalf("Transmit prepended: %d", n)
	}
	peer.recvMatch(t, func(b []byte) bool { return bytes.Equal(b, out) })
	waitComplete(t, s)

	st, err := s.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.TxInvalidDescs != 0 || st.RxInvalidDescs != 0 {
		t.Fatalf("kernel counted invalid descriptors: %+v", st)
	}
	c, err := prog.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	if c[xdpprog.RedirectService] != 1 || c[xdpprog.PassNoMatch] < 1 {
		t.Fatalf("program counters %v: want 1 redirect, >= 1 pass", c)
	}
}

// TestSharedUMEMAcrossDevices receives on xa and transmits the same frame out
// of ya through a second socket sharing the UMEM (the two-armed case).
func TestSharedUMEMAcrossDevices(t *testing.T) {
	links := vethNS(t, [2]string{"xa", "xb"}, [2]string{"ya", "yb"})
	xa, xb, ya, yb := links["xa"], links["xb"], links["ya"], links["yb"]
	u := newTestUMEM(t, 256)
	sa := openSocket(t, u, xa, Config{})
	steer(t, xa, "198.18.0.1", 9000, sa)
	sy, err := Open(u, Config{Ifindex: ya.Attrs().Index})
	if errors.Is(err, ErrSharedUMEM) {
		t.Skipf("kernel refuses to share a umem across devices here: %v", err)
	}
	if err != nil {
		t.Fatalf("open shared socket on ya: %v", err)
	}
	t.Cleanup(func() { sy.Close() })
	if _, err := Open(u, Config{Ifindex: ya.Attrs().Index}); !errors.Is(err, ErrConfig) {
		t.Fatalf("second socket on the same queue of the umem: %v, want ErrConfig", err)
	}
	sa.Fill(128)
	sy.Fill(64)
	in := newPacketSock(t, xb)
	outPeer := newPacketSock(t, yb)
	frame := udpFrame(t, xb.Attrs().HardwareAddr, xa.Attrs().HardwareAddr, "198.18.0.2", "198.18.0.1", 5000, 9000, []byte("two-armed"))
	in.send(t, frame)
	d := receiveOne(t, sa)
	f := u.Frame(d.Addr)[u.Offset(d.Addr):]
	copy(f[0:6], yb.Attrs().HardwareAddr)
	copy(f[6:12], ya.Attrs().HardwareAddr)
	want := append([]byte(nil), f[:d.Len]...)
	if n := sy.Transmit([]Desc{d}); n != 1 {
		t.Fatalf("Transmit on the shared socket: %d", n)
	}
	outPeer.recvMatch(t, func(b []byte) bool { return bytes.Equal(b, want) })
	free := u.FreeFrames()
	waitComplete(t, sy)
	if u.FreeFrames() != free+1 {
		t.Fatalf("completion did not return the frame to the shared stack: %d -> %d", free, u.FreeFrames())
	}
}

// TestZeroCopyFallback: veth has no zero copy, so ZeroCopyOn fails with
// ErrZeroCopy, ZeroCopyAuto falls back to copy mode, and the failed attempt
// leaves the UMEM usable.
func TestZeroCopyFallback(t *testing.T) {
	links := vethNS(t, [2]string{"xa", "xb"})
	u := newTestUMEM(t, 64)
	_, err := Open(u, Config{Ifindex: links["xa"].Attrs().Index, ZeroCopy: ZeroCopyOn})
	if !errors.Is(err, ErrZeroCopy) {
		t.Fatalf("ZeroCopyOn on veth: %v, want ErrZeroCopy", err)
	}
	s := openSocket(t, u, links["xa"], Config{ZeroCopy: ZeroCopyAuto})
	if s.ZeroCopyOn() {
		t.Fatal("veth reported zero copy")
	}
	off := openSocket(t, newTestUMEM(t, 64), links["xb"], Config{ZeroCopy: ZeroCopyOff})
	if off.ZeroCopyOn() {
		t.Fatal("ZeroCopyOff socket reported zero copy")
	}
	if _, err := Open(u, Config{Ifindex: 1 << 30}); err == nil {
		t.Fatal("open on a missing interface succeeded")
	}
}

func TestOpenConfigErrors(t *testing.T) {
	u := newTestUMEM(t, 16)
	for _, c := range []Config{
		{Ifindex: 0},
		{Ifindex: 1, Queue: -1},
		{Ifindex: 1, RxSize: 1000},
		{Ifindex: 1, FillSize: 1 << 21},
	} {
		if _, err := Open(u, c); !errors.Is(err, ErrConfig) {
			t.Errorf("Open(%+v): %v, want ErrConfig", c, err)
		}
	}
}
