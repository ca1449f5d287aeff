package probeencap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/encap"
)

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

// probe is a TCP SYN from the LB to the VIP, as the kernel sends a health check through the
// VIP to the backend's MAC.
func probe(t *testing.T) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 11}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{198, 18, 0, 2}, DstIP: net.IP{198, 18, 0, 100}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1000}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes()
}

func run(t *testing.T, p *Program, frame []byte, mark uint32) []byte {
	t.Helper()
	ctx := make([]byte, 12) // struct __sk_buff up to its mark (len and pkt_type must be 0)
	binary.NativeEndian.PutUint32(ctx[8:], mark)
	out := make([]byte, len(frame)+64)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Context: ctx}
	ret, err := p.objs.XlbProbeEncap.Run(opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if ret != 0 {
		t.Fatalf("verdict %d", ret)
	}
	return opts.DataOut
}

// TestProgram: a marked probe leaves in the service's encapsulation (checked with gopacket),
// an unmarked one untouched.
func TestProgram(t *testing.T) {
	p := load(t)
	src, dst := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.11")
	for i, e := range []encap.TunnelEncap{encap.EncapIPIP, encap.EncapGUE, encap.EncapFOU} {
		mark := uint32(0x58000001 + i)
		port := uint16(0)
		if e != encap.EncapIPIP {
			port = 6080 + uint16(i)
		}
		if err := p.Set(mark, src, dst, e, port); err != nil {
			t.Fatal(err)
		}
		in := probe(t)
		out := run(t, p, in, mark)
		g := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
		outer, ok := g.Layers()[1].(*layers.IPv4)
		if !ok || !outer.SrcIP.Equal(src.AsSlice()) || !outer.DstIP.Equal(dst.AsSlice()) || outer.TTL != 64 {
			t.Fatalf("%v: outer %v", e, g)
		}
		if sum := onesSum(out[14:34]); sum != 0xffff {
			t.Errorf("%v: outer IPv4 checksum wrong (sum %#x)", e, sum)
		}
		hl := 20
		switch e {
		case encap.EncapIPIP:
			if outer.Protocol != layers.IPProtocolIPv4 {
				t.Errorf("ipip: protocol %v", outer.Protocol)
			}
		default:
			u, ok := g.Layers()[2].(*layers.UDP)
			if !ok || uint16(u.DstPort) != port || u.SrcPort < 49152 || int(u.Length) != len(out)-14-20 {
				t.Fatalf("%v: udp %v", e, g)
			}
			hl += 8
			if e == encap.EncapGUE {
				if !bytes.Equal(out[14+28:14+32], []byte{0, 4, 0, 0}) {
					t.Errorf("gue header % x", out[14+28:14+32])
				}
				hl += 4
			}
		}
		if int(outer.Length) != len(out)-14 || !bytes.Equal(out[14+hl:], in[14:]) || !bytes.Equal(out[:14], in[:14]) {
			t.Errorf("%v: lengths or inner packet wrong:\n% x\n% x", e, out, in)
		}
		if got := run(t, p, in, 0x1234); !bytes.Equal(got, in) {
			t.Errorf("unmarked probe changed")
		}
		if err := p.Delete(mark); err != nil {
			t.Fatal(err)
		}
		if got := run(t, p, in, mark); !bytes.Equal(got, in) {
			t.Errorf("deleted mark still encapsulates")
		}
	}
	if n, failed, err := p.Stats(); err != nil || n != 3 || failed != 0 {
		t.Errorf("stats %d %d %v", n, failed, err)
	}
	if err := p.Set(1, netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2::11"), encap.EncapGUE, 6080); !errors.Is(err, ErrFamily) {
		t.Errorf("ipv6: %v", err)
	}
}

func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
