package encap

import (
	"encoding/binary"
	"net/netip"
)

// SetMACs writes the destination and source MAC addresses of the Ethernet frame pkt: the
// whole of the dr (direct routing) method, and the last step of nat.
func SetMACs(pkt []byte, dst, src [6]byte) Reason {
	if len(pkt) < 14 {
		return Truncated
	}
	*(*[6]byte)(pkt[0:6]) = dst // array stores: two plain moves each, where copy may call memmove
	*(*[6]byte)(pkt[6:12]) = src
	return OK
}

// NATToBackend rewrites a client->VIP packet towards its backend: the destination address
// becomes addr and, when port is not 0 and the packet has ports, the destination port becomes
// port. The IPv4 header checksum and the TCP/UDP/ICMPv6 checksum are updated incrementally
// (RFC 1624); a UDP checksum of 0 stays 0. For an ICMP error about one of the flow's replies
// the quoted packet's source (address, port) is rewritten too, with its checksums and the
// ICMP checksum, so the backend recognises it. pkt is the packet p was parsed from; MACs are
// left alone (see SetMACs) and p is not updated. A non-first fragment gets its address only.
func NATToBackend(pkt []byte, p *Packet, addr netip.Addr, port uint16) Reason {
	return natRewrite(pkt, p, addr, port, true)
}

// NAT4ToBackend is NATToBackend for an IPv4 backend address given as its 4 bytes: the
// same rewrite, with an IPv4 TCP or UDP packet's taken without a netip.Addr's checks (the
// engine's common case). Any other packet takes NATToBackend's general path. It is small
// enough for the compiler to inline, so a caller's call goes straight to the rewrite.
func NAT4ToBackend(pkt []byte, p *Packet, addr [4]byte, port uint16) Reason {
	return natRewrite4(pkt, p, addr, port, true)
}

// NATToClient rewrites a backend->client reply so it comes from the service: the source
// address becomes vip and, when port is not 0, the source port becomes port; checksums as for
// NATToBackend. For an ICMP error the backend sends about a client's packet, the quoted
// packet's destination is rewritten to the VIP.
func NATToClient(pkt []byte, p *Packet, vip netip.Addr, port uint16) Reason {
	return natRewrite(pkt, p, vip, port, false)
}

// addrOff returns the offset of the source (or destination) address in an IP header.
func addrOff(v6, dst bool) (off, n int) {
	switch {
	case v6 && dst:
		return 24, 16
	case v6:
		return 8, 16
	case dst:
		return 16, 4
	}
	return 12, 4
}

func natRewrite(pkt []byte, p *Packet, addr netip.Addr, port uint16, dst bool) Reason {
	if addr.Is4() {
		return natRewrite4(pkt, p, addr.As4(), port, dst) // its common case, or natGeneral
	}
	return natGeneral(pkt, p, addr, port, dst)
}

// natGeneral is natRewrite for every packet and address: either family, any protocol, an
// ICMP error's quote, a non-first fragment.
func natGeneral(pkt []byte, p *Packet, addr netip.Addr, port uint16, dst bool) Reason {
	v6 := p.Key.V6
	if p.IPVersion == 0 || !addr.IsValid() || addr.Is6() != v6 {
		return FamilyMismatch
	}
	if !p.consistent(len(pkt)) {
		return Truncated
	}
	var newA [16]byte
	if v6 {
		newA = addr.As16()
	} else {
		a4 := addr.As4()
		copy(newA[:], a4[:])
	}
	ip := pkt[p.L3Off:p.IPEnd]
	off, alen := addrOff(v6, dst)
	var oldA [16]byte
	copy(oldA[:alen], ip[off:off+alen])
	oldS, newS := oldA[:alen], newA[:alen]
	copy(ip[off:off+alen], newS)
	d := checksumDelta(oldS, newS)
	if !v6 {
		IPv4(ip).SetChecksum(checksumAdjust(IPv4(ip).Checksum(), d))
	}
	if !p.HasL4 { // a non-first fragment, or a protocol without a checksum we know
		return OK
	}
	l4 := pkt[p.L4Off:p.IPEnd]
	portOff := 0
	if dst {
		portOff = 2
	}
	switch p.L4Proto {
	case ProtoTCP, ProtoUDP:
		natPort(l4, p.L4Proto == ProtoUDP, portOff, port, d)
	case ProtoICMP, ProtoICMPv6:
		xs := binary.BigEndian.Uint16(l4[2:4])
		if v6 { // the ICMPv6 checksum covers the pseudo-header
			xs = checksumAdjust(xs, d)
		}
		if p.ICMPError {
			xs = natQuote(pkt, p, newS, port, !dst, xs)
		}
		binary.BigEndian.PutUint16(l4[2:4], xs)
	}
	return OK
}

// natRewrite4 is natRewrite for an IPv4 address. Its common case, an IPv4 TCP or UDP
// packet with its L4 header, it rewrites itself, on words and without the family-generic
// copies; any other packet goes to natGeneral.
func natRewrite4(pkt []byte, p *Packet, a [4]byte, port uint16, dst bool) Reason {
	if p.Key.V6 || !p.HasL4 || p.L4Proto != ProtoTCP && p.L4Proto != ProtoUDP {
		return natGeneral(pkt, p, netip.AddrFrom4(a), port, dst)
	}
	off, portOff, csOff, need, udp := 12, 0, 16, 20, p.L4Proto == ProtoUDP
	if dst {
		off, portOff = 16, 2
	}
	if udp {
		csOff, need = 6, 8
	}
	// consistent's checks for an IPv4 TCP or UDP packet, without the call to consistent
	// (an ICMP error is never TCP or UDP: a Packet that says both is refused).
	if p.IPVersion != 4 || !p.framed(len(pkt), 20, need) || p.ICMPError {
		if p.IPVersion == 0 {
			return FamilyMismatch
		}
		return Truncated
	}
	// The IP header and the L4 header's first 8 bytes as arrays: one bounds check each
	// (framed has made sure they are there), then constant offsets.
	ip := (*[20]byte)(pkt[p.L3Off : p.L3Off+20])
	l4 := pkt[p.L4Off : p.L4Off+need]
	oldA := binary.BigEndian.Uint32(ip[off : off+4])
	newA := binary.BigEndian.Uint32(a[:])
	binary.BigEndian.PutUint32(ip[off:off+4], newA)
	// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), each checksum's whole sum taken at once and
	// folded once (the address's two words, and for the L4 checksum the port's too), so
	// the two checksums are two short independent chains.
	da := uint64(^oldA) + uint64(newA)
	ipcs := binary.BigEndian.Uint16(ip[10:12])
	binary.BigEndian.PutUint16(ip[10:12], ^fold48(uint64(^ipcs)+da))
	dl := da
	if port != 0 {
		op := binary.BigEndian.Uint16(l4[portOff : portOff+2])
		binary.BigEndian.PutUint16(l4[portOff:portOff+2], port)
		dl += uint64(^op) + uint64(port)
	}
	cs := binary.BigEndian.Uint16(l4[csOff : csOff+2])
	switch {
	case !udp:
		binary.BigEndian.PutUint16(l4[csOff:csOff+2], ^fold48(uint64(^cs)+dl))
	case cs != 0: // a UDP checksum of 0 (none) stays 0
		binary.BigEndian.PutUint16(l4[csOff:csOff+2], udpNonZero(^fold48(uint64(^cs)+dl)))
	}
	return OK
}

// natPort finishes the NAT of a TCP or UDP segment l4 (its whole header present): the port
// at portOff becomes port unless port is 0, and the checksum takes the address delta d and
// the port's change (a UDP checksum of 0, none, stays 0).
func natPort(l4 []byte, udp bool, portOff int, port, d uint16) {
	csOff := 16
	if udp {
		csOff = 6
	}
	cs := binary.BigEndian.Uint16(l4[csOff : csOff+2])
	if port != 0 {
		op := binary.BigEndian.Uint16(l4[portOff : portOff+2])
		binary.BigEndian.PutUint16(l4[portOff:portOff+2], port)
		d = ChecksumCombine(d, ChecksumCombine(^op, port))
	}
	switch {
	case !udp:
		binary.BigEndian.PutUint16(l4[csOff:csOff+2], checksumAdjust(cs, d))
	case cs != 0:
		binary.BigEndian.PutUint16(l4[csOff:csOff+2], udpNonZero(checksumAdjust(cs, d)))
	}
}

// natQuote rewrites the source (dst false) or destination (dst true) of the packet an ICMP error
// quotes to addr/port, fixing its IPv4 header checksum and, when quoted, its TCP/UDP checksum.
// It returns the ICMP checksum xs updated for every quoted word it changed.
func natQuote(pkt []byte, p *Packet, addr []byte, port uint16, dst bool, xs uint16) uint16 {
	v6 := p.Key.V6
	q := pkt[p.InnerL3Off:p.IPEnd]
	off, alen := addrOff(v6, dst)
	var oldA [16]byte
	oldS := oldA[:alen]
	copy(oldS, q[off:off+alen])
	copy(q[off:off+alen], addr)
	xs = ChecksumUpdate(xs, oldS, addr)
	if !v6 {
		oc := IPv4(q).Checksum()
		nc := ChecksumUpdate(oc, oldS, addr)
		IPv4(q).SetChecksum(nc)
		xs = ChecksumUpdate16(xs, oc, nc)
	}
	if p.InnerL4Off == 0 {
		return xs
	}
	proto := p.Key.Proto
	il4 := pkt[p.InnerL4Off:p.IPEnd]
	csOff := -1
	if proto == ProtoTCP && len(il4) >= 18 {
		csOff = 16
	} else if proto == ProtoUDP && binary.BigEndian.Uint16(il4[6:8]) != 0 {
		csOff = 6
	}
	var oc uint16
	if csOff >= 0 {
		oc = binary.BigEndian.Uint16(il4[csOff : csOff+2])
	}
	nc := oc
	if csOff >= 0 {
		nc = ChecksumUpdate(nc, oldS, addr)
	}
	if port != 0 && (proto == ProtoTCP || proto == ProtoUDP) {
		portOff := 0
		if dst {
			portOff = 2
		}
		op := binary.BigEndian.Uint16(il4[portOff : portOff+2])
		binary.BigEndian.PutUint16(il4[portOff:portOff+2], port)
		xs = ChecksumUpdate16(xs, op, port)
		if csOff >= 0 {
			nc = ChecksumUpdate16(nc, op, port)
		}
	}
	if csOff >= 0 {
		if proto == ProtoUDP {
			nc = udpNonZero(nc)
		}
		binary.BigEndian.PutUint16(il4[csOff:csOff+2], nc)
		xs = ChecksumUpdate16(xs, oc, nc)
	}
	return xs
}
