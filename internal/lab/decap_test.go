package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// encapFrame builds Ethernet / outer IP (outerSrc -> outerDst) / inner IP (src -> dst) /
// l4 / payload with every length and checksum filled in.
func encapFrame(t *testing.T, srcMAC, dstMAC net.HardwareAddr, outerSrc, outerDst, src, dst netip.Addr, l4 gopacket.SerializableLayer, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC}
	var outer, inner gopacket.SerializableLayer
	l4proto := layers.IPProtocolUDP
	if _, ok := l4.(*layers.TCP); ok {
		l4proto = layers.IPProtocolTCP
	}
	innerProto := layers.IPProtocolIPv4
	var innerNet gopacket.NetworkLayer
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: l4proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		inner, innerNet = ip, ip
	} else {
		innerProto = layers.IPProtocolIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: l4proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		inner, innerNet = ip, ip
	}
	if outerSrc.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		outer = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: innerProto, SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		outer = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: innerProto, SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
	}
	switch l := l4.(type) {
	case *layers.UDP:
		_ = l.SetNetworkLayerForChecksum(innerNet)
	case *layers.TCP:
		_ = l.SetNetworkLayerForChecksum(innerNet)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, outer, inner, l4, gopacket.Payload(payload)); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func pick(v6 bool, a4, a6 netip.Addr) netip.Addr {
	if v6 {
		return a6
	}
	return a4
}

// TestDecapUDP sends IPIP, 6in4, 4in6 and 6in6 encapsulated UDP datagrams from the
// client (AF_PACKET) to a backend's own address, with the VIP as the inner destination,
// and checks the backend's UDP echo answers straight to the client from the VIP.
func TestDecapUDP(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1, Decap: true, NoHTTP: true})
	decapUDPOn(t, n, n.Client, "eth0")
}

// TwoArm with Decap: the LB sends the encapsulated datagram from its net B interface; the
// backend's reply (from the VIP) goes to the client through the LB's kernel forwarding.
func TestDecapTwoArm(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Kind: TwoArm, Backends: 1, Decap: true, NoHTTP: true})
	decapUDPOn(t, n, n.LB, "eth1")
}

// decapUDPOn sends from sender's interface ifname (outer source: its address there)
// datagrams whose inner source is the client, and reads the echoes at the client.
func decapUDPOn(t *testing.T, n *Net, sender *Host, ifname string) {
	b := n.Backends[0]
	if _, err := b.ServeUDPEcho(":7"); err != nil {
		t.Fatal(err)
	}
	raw, err := sender.RawSocket(ifname)
	if err != nil {
		t.Fatal(err)
	}
	cif, _ := sender.Iface(ifname)
	bif := b.Ifaces[0]
	sent := 0
	for i, c := range []struct{ outer6, inner6 bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		name := fmt.Sprintf("outer-v6=%v/inner-v6=%v", c.outer6, c.inner6)
		src := pick(c.inner6, n.Client.Addr(), n.Client.Addr6())
		vip := pick(c.inner6, n.VIP, n.VIP6)
		port := 40000 + i
		pc, err := n.Client.ListenPacket("udp", net.JoinHostPort(src.String(), fmt.Sprint(port)))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("ipip " + name)
		frame := encapFrame(t, cif.MAC, bif.MAC,
			pick(c.outer6, cif.Addr.Addr(), cif.Addr6.Addr()), pick(c.outer6, b.Addr(), b.Addr6()),
			src, vip, &layers.UDP{SrcPort: layers.UDPPort(port), DstPort: 7}, msg)
		if err := raw.Send(frame); err != nil {
			t.Fatal(err)
		}
		sent++
		_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 256)
		m, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Errorf("%s: no echo: %v", name, err)
			continue
		}
		got := from.(*net.UDPAddr).AddrPort()
		if string(buf[:m]) != string(msg) || got.Addr().Unmap() != vip || got.Port() != 7 {
			t.Errorf("%s: echo %q from %v, want %q from %v:7", name, buf[:m], got, msg, vip)
		}
	}
	st, err := b.Decap.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Seen != uint64(sent) || st.Decap != uint64(sent) || st.Error != 0 {
		t.Errorf("decap stats %+v, want %d seen and decapsulated, 0 errors", st, sent)
	}
}

// TestDecapTCPSyn sends an IPIP-encapsulated TCP SYN to the VIP and watches the client's
// wire for the backend's SYN-ACK from the VIP; plain traffic to the backend still works.
func TestDecapTCPSyn(t *testing.T) {
	t.Parallel()
	n := newNet(t, Config{Backends: 1, Decap: true})
	b := n.Backends[0]
	raw, err := n.Client.RawSocket("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, inner6 := range []bool{false, true} {
		src := pick(inner6, n.Client.Addr(), n.Client.Addr6())
		vip := pick(inner6, n.VIP, n.VIP6)
		const sport = 41000
		syn := &layers.TCP{SrcPort: sport, DstPort: 80, Seq: 1000, SYN: true, Window: 65535}
		frame := encapFrame(t, n.Client.Ifaces[0].MAC, b.Ifaces[0].MAC, n.Client.Addr(), b.Addr(), src, vip, syn, nil)
		if err := raw.Send(frame); err != nil {
			t.Fatal(err)
		}
		if err := waitSynAck(raw, vip, src, sport, 3*time.Second); err != nil {
			t.Errorf("inner v6=%v: %v", inner6, err)
		}
	}
	if got := getName(t, n.Client.NS, "http://"+b.Addr().String()+"/"); got != b.Name {
		t.Errorf("plain GET through the decap filter answered %q, want %q", got, b.Name)
	}
}

func waitSynAck(raw *Raw, from, to netip.Addr, dport uint16, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("no SYN-ACK from the VIP")
		}
		m, out, err := raw.Recv(buf, left)
		if err != nil {
			return fmt.Errorf("no SYN-ACK from the VIP: %w", err)
		}
		if out {
			continue
		}
		p := gopacket.NewPacket(buf[:m], layers.LayerTypeEthernet, gopacket.Default)
		tl, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || p.NetworkLayer() == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Src().Raw())
		dst, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Dst().Raw())
		if src == from && dst == to && tl.SrcPort == 80 && uint16(tl.DstPort) == dport && tl.SYN && tl.ACK && tl.Ack == 1001 {
			return nil
		}
	}
}
