package xsk

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethNS moves the calling goroutine, locked to its thread for good (the
// thread dies with the test), into a new network namespace xlb-<id>-xsk and
// creates the veth pairs named there. Everything is removed in t.Cleanup.
func vethNS(t testing.TB, pairs ...[2]string) map[string]netlink.Link {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces, veth and AF_XDP")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("current netns: %v", err)
	}
	var id [4]byte
	rand.Read(id[:])
	name := "xlb-" + hex.EncodeToString(id[:]) + "-xsk"
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
	links := map[string]netlink.Link{}
	for _, p := range pairs {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p[0], MTU: 1500}, PeerName: p[1]}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatalf("add veth %s/%s: %v", p[0], p[1], err)
		}
		for _, n := range p {
			l, err := netlink.LinkByName(n)
			if err != nil {
				t.Fatalf("find %s: %v", n, err)
			}
			if err := netlink.LinkSetUp(l); err != nil {
				t.Fatalf("set %s up: %v", n, err)
			}
			if l, err = netlink.LinkByName(n); err != nil {
				t.Fatalf("find %s: %v", n, err)
			}
			links[n] = l
		}
	}
	return links
}

// packetSock is an AF_PACKET raw socket on one interface: the test peer.
type packetSock struct {
	fd      int
	ifindex int
}

func newPacketSock(t testing.TB, l netlink.Link) *packetSock {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index}); err != nil {
		t.Fatalf("bind packet socket to %s: %v", l.Attrs().Name, err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("receive timeout: %v", err)
	}
	return &packetSock{fd: fd, ifindex: l.Attrs().Index}
}

func (p *packetSock) send(t testing.TB, frame []byte) {
	t.Helper()
	if err := unix.Sendto(p.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: p.ifindex, Halen: 6}); err != nil {
		t.Fatalf("send on packet socket: %v", err)
	}
}

// recvMatch waits up to 2 s for an incoming frame for which match is true.
func (p *packetSock) recvMatch(t testing.TB, match func([]byte) bool) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("receive on packet socket: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatal("no matching frame arrived on the packet socket within 2s")
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpFrame builds an Ethernet/IPv4/UDP frame with valid checksums.
func udpFrame(t testing.TB, src, dst net.HardwareAddr, sip, dip string, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(sip).To4(), DstIP: net.ParseIP(dip).To4()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return buf.Bytes()
}
