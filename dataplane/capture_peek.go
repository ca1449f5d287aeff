package dataplane

import (
	"encoding/binary"

	"github.com/xlb-dev/xlb/encap"
)

// peeked is what the capture filter needs of a frame, read straight from its bytes without
// encap.Parse: a few loads at fixed offsets, so a filter that matches nothing costs a few
// ns per frame. Addresses are laid out like encap.FlowKey's (IPv4 in the first four bytes).
type peeked struct {
	src, dst   [16]byte
	sport      uint16
	dport      uint16
	proto      uint8
	v6         bool
	portsKnown bool // the L4 header follows the IP header directly (no fragment, no IPv6 extension)
	extHdr     bool // IPv6 with extension headers: proto is the first one's, the L4 protocol is unknown
}

// isIPv6Ext reports whether an IPv6 next header is an extension header (RFC 8200, 7045).
func isIPv6Ext(nh uint8) bool {
	switch nh {
	case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254:
		return true
	}
	return false
}

// peek reads the IP addresses, the protocol and the ports of an Ethernet frame (untagged or
// with one 802.1Q/802.1ad tag). It reports false for anything else or a frame too short to
// hold the IP header.
func peek(pkt []byte, p *peeked) bool {
	if len(pkt) < 14 {
		return false
	}
	l3 := 14
	et := binary.BigEndian.Uint16(pkt[12:14])
	if et == 0x8100 || et == 0x88a8 {
		if len(pkt) < 18 {
			return false
		}
		et = binary.BigEndian.Uint16(pkt[16:18])
		l3 = 18
	}
	var l4 int
	switch et {
	case 0x0800:
		if len(pkt) < l3+20 || pkt[l3]>>4 != 4 {
			return false
		}
		h := pkt[l3:]
		p.v6, p.extHdr = false, false
		p.proto = h[9]
		p.src, p.dst = [16]byte{}, [16]byte{}
		copy(p.src[:4], h[12:16])
		copy(p.dst[:4], h[16:20])
		l4 = l3 + int(h[0]&0x0f)*4
		// A fragment other than the first has no L4 header; the first has one but the
		// engine keys every fragment portless (CONTRACTS.md): treat both as portless.
		if binary.BigEndian.Uint16(h[6:8])&0x3fff != 0 || h[0]&0x0f < 5 {
			l4 = -1
		}
	case 0x86dd:
		if len(pkt) < l3+40 || pkt[l3]>>4 != 6 {
			return false
		}
		h := pkt[l3:]
		p.v6 = true
		p.proto = h[6]
		p.extHdr = isIPv6Ext(p.proto)
		copy(p.src[:], h[8:24])
		copy(p.dst[:], h[24:40])
		l4 = l3 + 40
	default:
		return false
	}
	p.portsKnown = false
	p.sport, p.dport = 0, 0
	if (p.proto == encap.ProtoTCP || p.proto == encap.ProtoUDP) && l4 > 0 && len(pkt) >= l4+4 {
		p.sport = binary.BigEndian.Uint16(pkt[l4 : l4+2])
		p.dport = binary.BigEndian.Uint16(pkt[l4+2 : l4+4])
		p.portsKnown = true
	}
	return true
}

// prefix16 is an address prefix in FlowKey layout, compared with two masked 64-bit words.
type prefix16 struct {
	addr [2]uint64
	mask [2]uint64
	v6   bool
}

func (m *prefix16) contains(a *[16]byte, v6 bool) bool {
	return v6 == m.v6 &&
		binary.LittleEndian.Uint64(a[0:8])&m.mask[0] == m.addr[0] &&
		binary.LittleEndian.Uint64(a[8:16])&m.mask[1] == m.addr[1]
}
