package flood

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/internal/lab"
)

// synFlood sends TCP SYNs from random sources of a pool (random address and port, so
// every packet is a new flow) to a VIP:port through an AF_PACKET socket, 64 frames per
// sendmmsg, as fast as the thread goes. Frames carry correct IPv4 and TCP checksums, so a
// backend that gets one answers it as it would a real client.
type synFlood struct {
	fd      int
	ifindex int
	src     [6]byte
	dst     [6]byte
	vip     [4]byte
	port    uint16
	pool    netip.Prefix
	sent    atomic.Uint64
	stop    atomic.Bool
	done    chan error
}

const (
	floodBatch = 64
	synLen     = 14 + 20 + 20
)

func newSYNFlood(ns *lab.NS, ifname string, src, dst net.HardwareAddr, vip netip.Addr, port uint16, pool netip.Prefix) (*synFlood, error) {
	f := &synFlood{fd: -1, vip: vip.As4(), port: port, pool: pool, done: make(chan error, 1)}
	copy(f.src[:], src)
	copy(f.dst[:], dst)
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		f.ifindex = ifc.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("af_packet socket: %w", err)
		}
		f.fd = fd
		// Straight to the driver: the qdisc would only add a lock per frame.
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index})
	})
	if err != nil {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
		return nil, err
	}
	return f, nil
}

// start sends until stopFlood, on a thread of its own.
func (f *synFlood) start(seed uint64) {
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		f.done <- f.loop(seed)
	}()
}

// stopFlood stops the sender and returns the frames sent.
func (f *synFlood) stopFlood() (uint64, error) {
	f.stop.Store(true)
	err := <-f.done
	unix.Close(f.fd)
	return f.sent.Load(), err
}

func (f *synFlood) loop(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	frames := make([][synLen]byte, floodBatch)
	iov := make([]unix.Iovec, floodBatch)
	msgs := make([]unix.Mmsghdr, floodBatch)
	sa := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: int32(f.ifindex), Halen: 6}
	copy(sa.Addr[:], f.dst[:])
	for i := range frames {
		f.template(frames[i][:])
		iov[i].Base = &frames[i][0]
		iov[i].SetLen(synLen)
		msgs[i].Hdr.Iov = &iov[i]
		msgs[i].Hdr.Iovlen = 1
		msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sa))
		msgs[i].Hdr.Namelen = uint32(unsafe.Sizeof(sa))
	}
	base := f.pool.Masked().Addr().As4()
	hostBits := 32 - f.pool.Bits()
	for !f.stop.Load() {
		for i := range frames {
			h := uint32(rng.Uint64()) & (1<<hostBits - 1)
			srcIP := [4]byte{base[0] | byte(h>>24), base[1] | byte(h>>16), base[2] | byte(h>>8), base[3] | byte(h)}
			f.patch(frames[i][:], srcIP, uint16(1024+rng.IntN(64000)), uint32(rng.Uint64()))
		}
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(f.fd), uintptr(unsafe.Pointer(&msgs[0])), floodBatch, 0, 0, 0)
		switch errno {
		case 0:
			f.sent.Add(uint64(n))
		case unix.ENOBUFS, unix.EAGAIN, unix.EINTR:
		default:
			return fmt.Errorf("sendmmsg: %w", errno)
		}
	}
	return nil
}

// template writes the fixed fields of a SYN.
func (f *synFlood) template(b []byte) {
	copy(b[0:6], f.dst[:])
	copy(b[6:12], f.src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint16(ip[6:], 0x4000)
	copy(ip[16:20], f.vip[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[2:], f.port)
	tcp[12], tcp[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(tcp[14:], 65535)
}

// patch writes a flow's source, port and sequence number with both checksums.
func (f *synFlood) patch(b []byte, src [4]byte, sport uint16, seq uint32) {
	ip, tcp := b[14:34], b[34:54]
	copy(ip[12:16], src[:])
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], fold(sum(ip)))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[16], tcp[17] = 0, 0
	pseudo := sum(ip[12:20]) + 6 + 20
	binary.BigEndian.PutUint16(tcp[16:], fold(pseudo+sum(tcp)))
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestSYNFrames cross-checks the generator's frames with gopacket: a SYN to the VIP from
// the pool, with checksums that a recomputation agrees with.
func TestSYNFrames(t *testing.T) {
	f := &synFlood{vip: [4]byte{198, 18, 0, 100}, port: 80, src: [6]byte{2, 0, 0, 0, 0, 1}, dst: [6]byte{2, 0, 0, 0, 0, 2}}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		var b [synLen]byte
		f.template(b[:])
		src := [4]byte{198, 19, byte(rng.IntN(256)), byte(rng.IntN(256))}
		f.patch(b[:], src, uint16(1024+rng.IntN(64000)), uint32(rng.Uint64()))
		p := gopacket.NewPacket(b[:], layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil || !tcp.SYN || tcp.ACK || tcp.DstPort != 80 || !floodPool.Contains(netip.AddrFrom4([4]byte(ip.SrcIP.To4()))) {
			t.Fatalf("not a SYN from the pool to :80: %v", p)
		}
		want := append([]byte(nil), b[:]...)
		buf := gopacket.NewSerializeBuffer()
		tcp.SetNetworkLayerForChecksum(ip)
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true},
			p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet), ip, tcp); err != nil {
			t.Fatal(err)
		}
		if got := buf.Bytes(); len(got) < synLen || string(got[:synLen]) != string(want) { // gopacket pads to 60 bytes
			t.Fatalf("checksums differ from gopacket's:\n% x\n% x", want, got)
		}
	}
}
