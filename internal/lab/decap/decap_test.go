package decap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	c4   = net.IP{198, 18, 0, 1}
	b4   = net.IP{198, 18, 0, 11}
	v4   = net.IP{198, 18, 0, 100}
	c6   = net.ParseIP("2001:2::1")
	b6   = net.ParseIP("2001:2::11")
	v6   = net.ParseIP("2001:2::100")
)

const (
	tcActOK   = 0
	tcActShot = 2
)

func ser(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// inner returns a UDP datagram to the VIP in the given family.
func inner(t *testing.T, six bool) []byte {
	udp := &layers.UDP{SrcPort: 40000, DstPort: 7}
	if six {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: c6, DstIP: v6}
		_ = udp.SetNetworkLayerForChecksum(ip)
		return ser(t, ip, udp, gopacket.Payload("hello"))
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: c4, DstIP: v4}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return ser(t, ip, udp, gopacket.Payload("hello"))
}

func eth(six bool) *layers.Ethernet {
	e := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	if six {
		e.EthernetType = layers.EthernetTypeIPv6
	}
	return e
}

// ethHdr is the 14-byte header alone (serializing a lone Ethernet layer pads it to 60).
func ethHdr(six bool) []byte {
	h := append(append([]byte{}, macB...), macA...)
	if six {
		return append(h, 0x86, 0xdd)
	}
	return append(h, 0x08, 0x00)
}

// encap wraps in (inner family six) in an outer header of family outer6.
func encap(t *testing.T, outer6, six bool, in []byte) []byte {
	proto := layers.IPProtocolIPv4
	if six {
		proto = layers.IPProtocolIPv6
	}
	if outer6 {
		return ser(t, eth(true), &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: c6, DstIP: b6}, gopacket.Payload(in))
	}
	return ser(t, eth(false), &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: c4, DstIP: b4}, gopacket.Payload(in))
}

func load(t *testing.T) *Program {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	p, err := Load()
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func run(t *testing.T, p *Program, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+64)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	ret, err := p.Program().Run(opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return ret, opts.DataOut
}

// The program, run on crafted frames with BPF_PROG_TEST_RUN: each encapsulation comes out
// as Ethernet + the inner packet with the inner EtherType; anything else is untouched.
func TestProgram(t *testing.T) {
	p := load(t)
	decapped := 0
	for _, c := range []struct {
		name           string
		outer6, inner6 bool
	}{{"ipip", false, false}, {"6in4", false, true}, {"4in6", true, false}, {"ip6ip6", true, true}} {
		in := inner(t, c.inner6)
		frame := encap(t, c.outer6, c.inner6, in)
		ret, out := run(t, p, frame)
		want := append(ethHdr(c.inner6), in...)
		if ret != tcActOK || !bytes.Equal(out, want) {
			t.Errorf("%s: verdict %d, out\n% x\nwant\n% x", c.name, ret, out, want)
		}
		decapped++
	}

	// Outer IPv4 with 4 bytes of options (IHL 6): all 24 bytes go.
	in := inner(t, false)
	frame := encap(t, false, false, in)
	opt := append(append(append([]byte(nil), frame[:14+20]...), 1, 1, 1, 0), frame[14+20:]...)
	opt[14] = 0x46
	binary.BigEndian.PutUint16(opt[14+2:], uint16(len(opt)-14))
	if ret, out := run(t, p, opt); ret != tcActOK || !bytes.Equal(out, append(ethHdr(false), in...)) {
		t.Errorf("ipip with options: verdict %d, out % x", ret, out)
	}
	decapped++

	// An outer header around fewer bytes than an inner IP header (and no Ethernet padding):
	// dropped and counted. (The kernel's test run refuses frames too short for the outer
	// header itself, so that bounds check is covered only by the verifier.)
	short := append(ethHdr(false), ser(t, &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolIPv4, SrcIP: c4, DstIP: b4}, gopacket.Payload(in[:12]))...)
	ret, out := run(t, p, short)
	if ret != tcActShot {
		t.Errorf("ipip around 12 bytes: verdict %d, want drop; out % x", ret, out)
	}

	// Untouched: plain packets, fragments, other protocols.
	frag := append([]byte(nil), frame...)
	frag[14+6] = 0x20 // more fragments
	untouched := map[string][]byte{
		"plain ipv4":    append(ser(t, eth(false)), inner(t, false)...),
		"plain ipv6":    append(ser(t, eth(true)), inner(t, true)...),
		"ipip fragment": frag,
		"udp in ipv6":   append(ethHdr(true), inner(t, true)...),
		"arp":           ser(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeARP}, gopacket.Payload(make([]byte, 28))),
	}
	for name, f := range untouched {
		ret, out := run(t, p, f)
		if ret != tcActOK || !bytes.Equal(out, f) {
			t.Errorf("%s: verdict %d, changed to % x", name, ret, out)
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Seen != uint64(decapped+1) || st.Decap != uint64(decapped) || st.Error != 1 {
		t.Errorf("stats %+v, want %d seen, %d decapsulated, 1 error", st, decapped+1, decapped)
	}
}

// udpEncap wraps in (family inner6) in outer IP (family outer6) + UDP to port, with a GUE
// header (variant 0, hlen words of options) when gue is set.
func udpEncap(t *testing.T, outer6, inner6, gue bool, hlen int, port uint16, in []byte) []byte {
	payload := in
	if gue {
		proto := byte(4)
		if inner6 {
			proto = 41
		}
		payload = append(append([]byte{byte(hlen), proto, 0, 0}, make([]byte, 4*hlen)...), in...)
	}
	udp := &layers.UDP{SrcPort: 50000, DstPort: layers.UDPPort(port)}
	if outer6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: c6, DstIP: b6}
		_ = udp.SetNetworkLayerForChecksum(ip)
		return ser(t, eth(true), ip, udp, gopacket.Payload(payload))
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: c4, DstIP: b4}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(false), ip, udp, gopacket.Payload(payload))
}

// TestProgramUDP: GUE (with and without options) and FOU datagrams to a registered port come
// out as Ethernet + the inner packet; other ports, GUE control messages and unknown inner
// protocols pass untouched.
func TestProgramUDP(t *testing.T) {
	p := load(t)
	if err := p.AddUDPPort(6080); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, outer6 := range []bool{false, true} {
		for _, inner6 := range []bool{false, true} {
			for _, c := range []struct {
				name string
				gue  bool
				hlen int
			}{{"gue", true, 0}, {"gue options", true, 2}, {"fou", false, 0}} {
				in := inner(t, inner6)
				ret, out := run(t, p, udpEncap(t, outer6, inner6, c.gue, c.hlen, 6080, in))
				if want := append(ethHdr(inner6), in...); ret != tcActOK || !bytes.Equal(out, want) {
					t.Errorf("%s outer6 %v inner6 %v: verdict %d, out\n% x\nwant\n% x", c.name, outer6, inner6, ret, out, want)
				}
				n++
			}
		}
	}
	in := inner(t, false)
	ctrl := udpEncap(t, false, false, true, 0, 6080, in)
	ctrl[14+20+8] |= 0x20 // the C bit: a control message
	badProto := udpEncap(t, false, false, true, 0, 6080, in)
	badProto[14+20+8+1] = 17
	for name, f := range map[string][]byte{
		"other port":       udpEncap(t, false, false, false, 0, 6081, in),
		"gue control":      ctrl,
		"gue protocol udp": badProto,
	} {
		if ret, out := run(t, p, f); ret != tcActOK || !bytes.Equal(out, f) {
			t.Errorf("%s: verdict %d, changed to % x", name, ret, out)
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Decap != uint64(n) || st.Error != 0 {
		t.Errorf("stats %+v, want %d decapsulated", st, n)
	}
}
