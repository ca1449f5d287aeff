package xdpprog

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const (
	xdpPass     = 2
	xdpRedirect = 4
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

// loaded returns the program with services 198.18.0.10 udp/53, 198.18.0.11
// tcp/* (port 0), 2001:db8::10 tcp/443, and the NAT backend
// 198.18.1.5 tcp/8080.
func loaded(t testing.TB) *Program {
	t.Helper()
	requireRoot(t)
	p, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	for _, k := range []Key{
		{netip.MustParseAddr("198.18.0.10"), 53, 17},
		{netip.MustParseAddr("198.18.0.11"), 0, 6},
		{netip.MustParseAddr("2001:db8::10"), 443, 6},
	} {
		if err := p.AddService(k); err != nil {
			t.Fatalf("AddService %v: %v", k, err)
		}
	}
	if err := p.AddNATBackend(Key{netip.MustParseAddr("198.18.1.5"), 8080, 6}); err != nil {
		t.Fatalf("AddNATBackend: %v", err)
	}
	if err := p.AddNATBackend(Key{netip.MustParseAddr("198.18.1.6"), 0, 17}); err != nil {
		t.Fatalf("AddNATBackend port 0: %v", err)
	}
	return p
}

// run runs the program once on frame and returns the verdict and the one
// counter that moved.
func run(t testing.TB, p *Program, frame []byte) (uint32, Reason) {
	t.Helper()
	before, err := p.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	v, err := p.objs.Xlb.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	after, err := p.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	moved := Reason(-1)
	for r := range NumReasons {
		switch after[r] - before[r] {
		case 0:
		case 1:
			if moved >= 0 {
				t.Fatalf("counters %v and %v both moved", moved, r)
			}
			moved = r
		default:
			t.Fatalf("counter %v moved by %d", r, after[r]-before[r])
		}
	}
	if moved < 0 {
		t.Fatalf("no counter moved (verdict %d)", v)
	}
	return v, moved
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: typ}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func udp4(t testing.TB, src, dst string, sport, dport uint16) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload("payload!"))
}

func tcp4(t testing.TB, src, dst string, sport, dport uint16) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	c := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1024}
	c.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, c)
}

// icmp4Error builds an ICMP error from 198.18.9.9 to outerDst about the
// packet inner (an IP packet without its Ethernet header).
func icmp4Error(t testing.TB, outerDst string, typ, code uint8, inner []byte) []byte {
	ip := ip4("198.18.9.9", outerDst, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, ic, gopacket.Payload(inner[:28]))
}

// ip6Frame builds Ethernet + IPv6 from src to dst whose payload starts with
// the extension headers exts (each 8 bytes, next header filled in) followed
// by l4 of protocol proto.
func ip6Frame(src, dst string, exts []uint8, proto uint8, l4 []byte) []byte {
	payload := make([]byte, 0, 8*len(exts)+len(l4))
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1]
		}
		h := make([]byte, 8)
		h[0] = next
		if e == 44 { // fragment header: offset 0, M set
			h[3] = 1
		} else if e == 51 { // AH: length in 4-byte units minus 2
			h[1] = 0
		}
		payload = append(payload, h...)
	}
	payload = append(payload, l4...)
	first := proto
	if len(exts) > 0 {
		first = exts[0]
	}
	f := make([]byte, 14+40, 14+40+len(payload))
	copy(f[0:], macA)
	copy(f[6:], macB)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	f[14] = 0x60
	binary.BigEndian.PutUint16(f[18:], uint16(len(payload)))
	f[20] = first
	f[21] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(f[22:], s[:])
	copy(f[38:], d[:])
	return append(f, payload...)
}

func ports(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	return b
}

func TestVerdicts(t *testing.T) {
	p := loaded(t)
	arp := serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
		Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
		SourceHwAddress: macB, SourceProtAddress: []byte{198, 18, 0, 2},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 10}})
	echo := serialize(t, eth(layers.EthernetTypeIPv4), ip4("198.18.0.2", "198.18.0.10", layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})
	// The LB sent VIP:53 -> client; a router says "fragmentation needed".
	reply := udp4(t, "198.18.0.10", "198.18.0.2", 53, 40000)[14:]
	fragNeeded := icmp4Error(t, "198.18.0.10", 3, 4, reply)
	aboutServiceToOther := icmp4Error(t, "198.18.0.99", 3, 4, reply)
	aboutOther := icmp4Error(t, "198.18.0.99", 3, 4, udp4(t, "198.18.0.99", "198.18.0.2", 53, 40000)[14:])
	opts := ip4("198.18.0.2", "198.18.0.10", layers.IPProtocolUDP)
	opts.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}
	ou := &layers.UDP{SrcPort: 1234, DstPort: 53}
	ou.SetNetworkLayerForChecksum(opts)
	withOptions := serialize(t, eth(layers.EthernetTypeIPv4), opts, ou, gopacket.Payload("x"))
	vu := &layers.UDP{SrcPort: 1234, DstPort: 53}
	vip := ip4("198.18.0.2", "198.18.0.10", layers.IPProtocolUDP)
	vu.SetNetworkLayerForChecksum(vip)
	vlan := serialize(t, eth(layers.EthernetTypeDot1Q),
		&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}, vip, vu, gopacket.Payload("x"))
	frag := ip4("198.18.0.2", "198.18.0.11", layers.IPProtocolTCP)
	frag.FragOffset = 185
	later := serialize(t, eth(layers.EthernetTypeIPv4), frag, gopacket.Payload(make([]byte, 64)))
	fragOther := ip4("198.18.0.2", "198.18.0.77", layers.IPProtocolTCP)
	fragOther.FragOffset = 185
	laterOther := serialize(t, eth(layers.EthernetTypeIPv4), fragOther, gopacket.Payload(make([]byte, 64)))

	v6svc := ip6Frame("2001:db8::2", "2001:db8::10", nil, 6, ports(5555, 443))
	v6ext := ip6Frame("2001:db8::2", "2001:db8::10", []uint8{0, 60, 43, 51}, 6, ports(5555, 443))
	v6tooMany := ip6Frame("2001:db8::2", "2001:db8::10", []uint8{0, 60, 60, 60, 60, 60, 60}, 6, ports(5555, 443))
	v6frag := ip6Frame("2001:db8::2", "2001:db8::10", []uint8{44}, 6, ports(5555, 443))
	v6other := ip6Frame("2001:db8::2", "2001:db8::10", nil, 6, ports(5555, 80))
	inner6 := ip6Frame("2001:db8::10", "2001:db8::2", nil, 6, ports(443, 5555))[14:]
	icmp6 := append([]byte{2, 0, 0, 0, 0, 0, 5, 0}, inner6...)
	tooBig := ip6Frame("2001:db8::9", "2001:db8::99", nil, 58, icmp6)
	echo6 := ip6Frame("2001:db8::2", "2001:db8::10", nil, 58, []byte{128, 0, 0, 0, 0, 1, 0, 1})

	for _, c := range []struct {
		name   string
		frame  []byte
		reason Reason
	}{
		{"udp service, no socket on the queue", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53), PassNoSocket},
		{"tcp any-port service", tcp4(t, "198.18.0.2", "198.18.0.11", 1234, 22), PassNoSocket},
		{"same vip, other port", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 54), PassNoMatch},
		{"same port, tcp", tcp4(t, "198.18.0.2", "198.18.0.10", 1234, 53), PassNoMatch},
		{"ssh to the host", tcp4(t, "198.18.0.2", "198.18.0.1", 40000, 22), PassNoMatch},
		{"arp", arp, PassNotIP},
		{"icmp echo to a vip", echo, PassNoMatch},
		{"nat reply", tcp4(t, "198.18.1.5", "198.18.0.2", 8080, 40000), PassNoSocket},
		{"nat backend, other port", tcp4(t, "198.18.1.5", "198.18.0.2", 8081, 40000), PassNoMatch},
		{"nat backend, every port", udp4(t, "198.18.1.6", "198.18.0.2", 12345, 40000), PassNoSocket},
		{"nat backend, every port, other proto", tcp4(t, "198.18.1.6", "198.18.0.2", 12345, 40000), PassNoMatch},
		{"frag needed about a vip flow", fragNeeded, PassNoSocket},
		{"icmp error, embedded source is a service", aboutServiceToOther, PassNoSocket},
		{"icmp error about another flow", aboutOther, PassNoMatch},
		{"ipv4 options", withOptions, PassNoSocket},
		{"802.1q", vlan, PassNoSocket},
		{"ipv4 later fragment to a vip", later, PassNoSocket},
		{"ipv4 later fragment elsewhere", laterOther, PassNoMatch},
		{"ipv6 service", v6svc, PassNoSocket},
		{"ipv6 extension headers", v6ext, PassNoSocket},
		{"ipv6 too many extension headers", v6tooMany, ErrMalformed},
		{"ipv6 fragment to a vip", v6frag, PassNoSocket},
		{"ipv6 other port", v6other, PassNoMatch},
		{"icmpv6 packet too big about a service flow", tooBig, PassNoSocket},
		{"icmpv6 echo", echo6, PassNoMatch},
	} {
		v, r := run(t, p, c.frame)
		if v != xdpPass || r != c.reason {
			t.Errorf("%s: verdict %d reason %v, want XDP_PASS (%d) reason %v", c.name, v, r, xdpPass, c.reason)
		}
	}
}

// TestTruncated runs every prefix of packets that would be redirected: each is
// passed to the kernel, and counted as truncated until the bytes the program
// needs (up to the ports) are there.
func TestTruncated(t *testing.T) {
	p := loaded(t)
	reply := udp4(t, "198.18.0.10", "198.18.0.2", 53, 40000)[14:]
	for _, c := range []struct {
		name  string
		frame []byte
		// below[i] is the reason for prefixes shorter than cut[i].
		cut   []int
		below []Reason
		rest  Reason
	}{
		{"udp", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53),
			[]int{38}, []Reason{ErrTruncated}, PassNoSocket},
		// ICMP header complete at 42; embedded ports complete at 66.
		{"icmp error", icmp4Error(t, "198.18.0.99", 3, 4, reply),
			[]int{42, 66}, []Reason{ErrTruncated, PassNoMatch}, PassNoSocket},
		// 14 + 40 + 4*8 extension headers + 4 bytes of ports.
		{"ipv6 extension headers", ip6Frame("2001:db8::2", "2001:db8::10", []uint8{0, 60, 43, 51}, 6, ports(5555, 443)),
			[]int{14 + 40 + 32 + 4}, []Reason{ErrTruncated}, PassNoSocket},
		{"vlan header", serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{Type: layers.EthernetTypeIPv4}),
			[]int{38}, []Reason{ErrTruncated}, ErrMalformed}, // padded with zeros: IP version 0
	} {
		for n := 14; n <= len(c.frame); n++ {
			want := c.rest
			for i := len(c.cut) - 1; i >= 0; i-- {
				if n < c.cut[i] {
					want = c.below[i]
				}
			}
			v, r := run(t, p, c.frame[:n])
			if v != xdpPass || r != want {
				t.Fatalf("%s, %d of %d bytes: verdict %d reason %v, want XDP_PASS reason %v", c.name, n, len(c.frame), v, r, want)
			}
		}
	}
}

// TestLocals: a packet from a NAT backend to one of the host's own addresses
// (the reply to the LB's own health check of the backend) goes to the kernel;
// the same packet to a client is a NAT reply, and is again once the address
// is no longer the host's.
func TestLocals(t *testing.T) {
	p := loaded(t)
	toHost := tcp4(t, "198.18.1.5", "198.18.1.1", 8080, 40000)
	toClient := tcp4(t, "198.18.1.5", "198.18.0.2", 8080, 40000)
	toHost6 := ip6Frame("2001:db8:1::5", "2001:db8:1::1", nil, 6, ports(8080, 40000))
	if err := p.AddNATBackend(Key{netip.MustParseAddr("2001:db8:1::5"), 8080, 6}); err != nil {
		t.Fatalf("AddNATBackend: %v", err)
	}
	check := func(when, name string, frame []byte, want Reason) {
		t.Helper()
		if v, r := run(t, p, frame); v != xdpPass || r != want {
			t.Errorf("%s: %s: verdict %d reason %v, want reason %v", when, name, v, r, want)
		}
	}
	check("no locals", "to the host", toHost, PassNoSocket)
	check("no locals", "v6 to the host", toHost6, PassNoSocket)
	locals := []netip.Addr{netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("::ffff:198.18.0.1"),
		netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("fe80::1%eth0")}
	if err := p.SetLocals(locals); err != nil {
		t.Fatalf("SetLocals: %v", err)
	}
	check("locals set", "to the host", toHost, PassLocal)
	check("locals set", "v6 to the host", toHost6, PassLocal)
	check("locals set", "to a client", toClient, PassNoSocket)
	check("locals set", "service to a local address", udp4(t, "198.18.0.2", "198.18.0.10", 1234, 53), PassNoSocket)
	check("locals set", "not a nat backend, to the host", tcp4(t, "198.18.1.7", "198.18.1.1", 8080, 40000), PassNoMatch)
	if err := p.SetLocals(locals[:1]); err != nil {
		t.Fatalf("SetLocals: %v", err)
	}
	check("v6 removed", "to the host", toHost, PassLocal)
	check("v6 removed", "v6 to the host", toHost6, PassNoSocket)
	if err := p.SetLocals(nil); err != nil {
		t.Fatalf("SetLocals: %v", err)
	}
	check("emptied", "to the host", toHost, PassNoSocket)
}
