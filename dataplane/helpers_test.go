package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

var (
	macClient = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macLB     = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	macLB2    = [6]byte{0x02, 0, 0, 0, 0, 0x03}
	vip4      = netip.MustParseAddr("198.18.0.100")
	vip6      = netip.MustParseAddr("2001:2::100")
	client4   = netip.MustParseAddr("198.18.0.1")
	client6   = netip.MustParseAddr("2001:2::1")
)

const (
	ifLB      = 2 // the LB's client-side interface in the tests
	ifLB2     = 3 // its backend-side interface (two-armed)
	frameSize = 4096
	headroom  = 256
)

func backendMAC(i int) [6]byte { return [6]byte{0x02, 0, 0, 0, 1, byte(i)} }

func backendAddr(v6 bool, i int) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("2001:2::%d", 11+i))
	}
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
}

// schedService builds a sched snapshot of n backends, all up with weight 1.
func schedService(t testing.TB, index, n int, strategy sched.Strategy) *sched.Service {
	t.Helper()
	bs := make([]sched.Backend, n)
	for i := range bs {
		bs[i] = sched.Backend{ID: uint32(i + 1), Name: fmt.Sprintf("b%d", i), Weight: 1, Up: true}
	}
	s, err := sched.NewService(sched.ServiceConfig{Index: index, Strategy: strategy}, bs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// spec returns a service of n backends on the client-side interface.
func spec(t testing.TB, name string, index int, vip netip.Addr, port uint16, m Method, n int) ServiceSpec {
	t.Helper()
	s := ServiceSpec{Name: name, VIP: vip, Port: port, Proto: encap.ProtoTCP, Method: m,
		Sched: schedService(t, index, n, sched.Maglev)}
	for i := range n {
		s.Targets = append(s.Targets, Target{Addr: backendAddr(vip.Is6(), i),
			Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: backendMAC(i), MTU: 1500}})
	}
	if m == MethodTunnel {
		if vip.Is6() {
			s.TunnelSource = netip.MustParsePrefix("2001:2::2/128")
		} else {
			s.TunnelSource = netip.MustParsePrefix("198.18.0.2/32")
		}
	}
	return s
}

func mustSnapshot(t testing.TB, routes []Route, svcs ...ServiceSpec) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(svcs, routes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type pktOpts struct {
	src, dst     netip.Addr
	sport, dport uint16
	udp          bool
	flags        uint8 // TCP: SYN etc. (0 = ACK)
	payload      int
	noDF         bool
	srcMAC       [6]byte
	dstMAC       [6]byte
}

// craft serializes a packet with gopacket (checksums computed) and returns its bytes.
func craft(t testing.TB, o pktOpts) []byte {
	t.Helper()
	if o.srcMAC == ([6]byte{}) {
		o.srcMAC = macClient
	}
	if o.dstMAC == ([6]byte{}) {
		o.dstMAC = macLB
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(o.srcMAC[:]), DstMAC: net.HardwareAddr(o.dstMAC[:])}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	proto := layers.IPProtocolTCP
	if o.udp {
		proto = layers.IPProtocolUDP
	}
	if o.src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: o.src.AsSlice(), DstIP: o.dst.AsSlice(), Id: 7}
		if !o.noDF {
			ip.Flags = layers.IPv4DontFragment
		}
		nl = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: o.src.AsSlice(), DstIP: o.dst.AsSlice()}
		nl = ip
		ls = append(ls, eth, ip)
	}
	if o.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(o.sport), DstPort: layers.UDPPort(o.dport)}
		_ = u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(o.sport), DstPort: layers.TCPPort(o.dport), Seq: 1, Window: 1000}
		switch {
		case o.flags&encap.TCPFlagSYN != 0:
			tcp.SYN = true
		default:
			tcp.ACK = true
		}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(make([]byte, o.payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// frameOf puts pkt into a fresh frame buffer behind the receive headroom.
func frameOf(pkt []byte) Frame {
	buf := make([]byte, frameSize)
	copy(buf[headroom:], pkt)
	return Frame{Buf: buf, Off: headroom, Len: len(pkt), In: ifLB}
}

func (f *Frame) packet() []byte { return f.Buf[f.Off : f.Off+f.Len] }

func decode(b []byte) gopacket.Packet {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
}

// checksumsOK re-serializes the decoded packet with computed checksums and compares.
func checksumsOK(t *testing.T, b []byte) {
	t.Helper()
	p := decode(b)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			ls = append(ls, v)
		case *layers.IPv4:
			nl = v
			ls = append(ls, v)
		case *layers.IPv6:
			nl = v
			ls = append(ls, v)
		case *layers.TCP:
			_ = v.SetNetworkLayerForChecksum(nl)
			ls = append(ls, v, gopacket.Payload(v.Payload))
		case *layers.UDP:
			_ = v.SetNetworkLayerForChecksum(nl)
			ls = append(ls, v, gopacket.Payload(v.Payload))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	if got, want := b, buf.Bytes(); string(got[:len(want)]) != string(want) {
		t.Fatalf("checksums differ from a recomputation:\n got %x\nwant %x", got, want)
	}
}

// steeringCounters returns the XDP programs' verdict counters per interface name (tests
// only: the data path's own counters are what the API and the metrics show).
func (d *Dataplane) steeringCounters() (map[string]xdpprog.Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	out := map[string]xdpprog.Counters{}
	for _, ifc := range d.ifaces {
		c, err := ifc.prog.Counters()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ifc.info.Name, err)
		}
		out[ifc.info.Name] = c
	}
	return out, nil
}
