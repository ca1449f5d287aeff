package ha

import (
	"encoding/binary"
	"net/netip"

	"github.com/xlb-dev/xlb/encap"
)

// Link-layer announcements that move a VIP's neighbour entries to this host's MAC address.

const (
	naLen        = 32 // ICMPv6 header 4 + flags 4 + target 16 + target link-layer option 8
	etherTypeARP = 0x0806
	etherTypeV6  = 0x86dd
	protoICMPv6  = 58
)

// AppendGARP appends a gratuitous ARP request for vip from mac (Ethernet broadcast, sender
// and target protocol address both vip, RFC 5227 section 3) to b.
func AppendGARP(b []byte, mac [6]byte, vip netip.Addr) []byte {
	ip := vip.As4()
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = append(b, 0, 1, 0x08, 0x00, 6, 4, 0, 1) // Ethernet, IPv4, hlen 6, plen 4, request
	b = append(b, mac[:]...)
	b = append(b, ip[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, ip[:]...)
	return b
}

// AppendUnsolicitedNA appends an unsolicited neighbour advertisement for vip with mac as its
// target link-layer address (override flag set, RFC 4861 section 7.2.6) to b: from vip to the
// all-nodes group ff02::1, hop limit 255.
func AppendUnsolicitedNA(b []byte, mac [6]byte, vip netip.Addr) []byte {
	allNodes := [16]byte{0xff, 0x02, 15: 1}
	src := vip.As16()
	b = append(b, 0x33, 0x33, 0, 0, 0, 1)
	b = append(b, mac[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeV6)
	ip := len(b)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, naLen)
	b = append(b, protoICMPv6, 255)
	b = append(b, src[:]...)
	b = append(b, allNodes[:]...)
	icmp := len(b)
	b = append(b, 136, 0, 0, 0)  // type NA, code 0, checksum
	b = append(b, 0x20, 0, 0, 0) // flags: override
	b = append(b, src[:]...)     // target
	b = append(b, 2, 1)          // option: target link-layer address, 8 bytes
	b = append(b, mac[:]...)
	sum := encap.PseudoHeaderChecksum(protoICMPv6, b[ip+8:ip+24], b[ip+24:ip+40], naLen)
	binary.BigEndian.PutUint16(b[icmp+2:], ^encap.Checksum(b[icmp:], sum))
	return b
}

// AppendAnnouncement appends the announcement frame for vip (GARP for IPv4, unsolicited NA
// for IPv6).
func AppendAnnouncement(b []byte, mac [6]byte, vip netip.Addr) []byte {
	if vip.Is4() {
		return AppendGARP(b, mac, vip)
	}
	return AppendUnsolicitedNA(b, mac, vip)
}
