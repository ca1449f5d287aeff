package ha

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var testMAC = [6]byte{0x02, 0, 0x5e, 0, 1, 9}

func TestGARPAgainstGopacket(t *testing.T) {
	vip := netip.MustParseAddr("198.19.0.10")
	b := AppendAnnouncement(nil, testMAC, vip)
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		t.Fatalf("gopacket does not see Ethernet+ARP: %v", p)
	}
	if eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" || !bytes.Equal(eth.SrcMAC, testMAC[:]) {
		t.Fatalf("ethernet %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	if arp.Operation != layers.ARPRequest || arp.Protocol != layers.EthernetTypeIPv4 ||
		!bytes.Equal(arp.SourceHwAddress, testMAC[:]) ||
		!net.IP(arp.SourceProtAddress).Equal(net.IP(vip.AsSlice())) ||
		!net.IP(arp.DstProtAddress).Equal(net.IP(vip.AsSlice())) {
		t.Fatalf("arp %+v", arp)
	}
}

func TestUnsolicitedNAAgainstGopacket(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8::10")
	got := AppendAnnouncement(nil, testMAC, vip)

	// Build the same frame with gopacket, which computes the ICMPv6 checksum itself.
	eth := &layers.Ethernet{SrcMAC: testMAC[:], DstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1},
		EthernetType: layers.EthernetTypeIPv6}
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: vip.AsSlice(), DstIP: net.ParseIP("ff02::1")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		t.Fatal(err)
	}
	na := &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: vip.AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: testMAC[:]}}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip6, icmp, na); err != nil {
		t.Fatal(err)
	}
	if want := buf.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("unsolicited NA\n got % x\nwant % x", got, want)
	}
}
