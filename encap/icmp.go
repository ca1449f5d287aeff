package encap

import "encoding/binary"

// ICMPv6 "packet too big" replies are kept within the IPv6 minimum MTU (RFC 4443, 2.4 (c)).
const minMTU6 = 1280

// ICMPTooBig turns the frame holding p (parsed from buf[off:off+n]) into the reply that tells
// its sender the path MTU is mtu: for IPv4 (with DF) an ICMP "destination unreachable,
// fragmentation needed" (type 3 code 4, RFC 792/1191) quoting the IP header and the first 8
// bytes of its payload; for IPv6 an ICMPv6 "packet too big" (RFC 4443) quoting as much of the
// packet as fits in 1280 bytes. The quote stays where it is; the headers are written in front of
// it, into the headroom. The reply goes from the packet's destination (the VIP) to its source,
// with TTL 64, the Ethernet addresses swapped and the 802.1Q tag kept. It returns the new
// (off, n) and ReplyICMP, or TooBig (drop, nothing written) when no error may be sent: an IPv4
// packet without DF, a non-first fragment, an ICMP error, or a source that is not unicast.
func ICMPTooBig(buf []byte, off, n int, p *Packet, mtu int) (int, int, Reason) {
	if off < 0 || n < 0 || off+n > len(buf) || !p.consistent(n) {
		return off, n, Truncated
	}
	v6 := p.IPVersion == 6
	if (!v6 && !p.DF) || p.FragOffset != 0 || p.ICMPError || isICMPErrorProto(p) {
		return off, n, TooBig
	}
	ip := off + p.L3Off
	orig := buf[ip : off+p.IPEnd]
	if !unicastSource(orig, v6) {
		return off, n, TooBig
	}
	ipLen, qlen := 20, p.L4Off-p.L3Off+8
	if v6 {
		ipLen, qlen = 40, minMTU6-48
	}
	if qlen > len(orig) {
		qlen = len(orig)
	}
	start := off - ipLen - 8 // the new Ethernet header is as long as the old one
	if start < 0 {
		return off, n, NoHeadroom
	}
	var dmac, smac [6]byte
	copy(dmac[:], buf[off:off+6])
	copy(smac[:], buf[off+6:off+12])
	f := buf[start:ip]
	copy(f[0:6], smac[:])
	copy(f[6:12], dmac[:])
	l3 := 14
	if p.Tagged {
		binary.BigEndian.PutUint16(f[12:14], EtherTypeVLAN)
		binary.BigEndian.PutUint16(f[14:16], p.VLANTCI)
		l3 = 18
	}
	h := f[l3:]
	icmp := buf[start+l3+ipLen : ip+qlen]
	if v6 {
		binary.BigEndian.PutUint16(f[l3-2:l3], EtherTypeIPv6)
		binary.BigEndian.PutUint32(h[0:4], 6<<28)
		binary.BigEndian.PutUint16(h[4:6], uint16(8+qlen))
		h[6] = ProtoICMPv6
		h[7] = 64
		copy(h[8:24], orig[24:40])
		copy(h[24:40], orig[8:24])
		icmp[0], icmp[1], icmp[2], icmp[3] = 2, 0, 0, 0
		binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
		s := PseudoHeaderChecksum(ProtoICMPv6, h[8:24], h[24:40], len(icmp))
		binary.BigEndian.PutUint16(icmp[2:4], ^Checksum(icmp, s))
		return start, l3 + 40 + 8 + qlen, ReplyICMP
	}
	binary.BigEndian.PutUint16(f[l3-2:l3], EtherTypeIPv4)
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:4], uint16(20+8+qlen))
	binary.BigEndian.PutUint32(h[4:8], 0) // id 0, no flags
	h[8], h[9], h[10], h[11] = 64, ProtoICMP, 0, 0
	copy(h[12:16], orig[16:20])
	copy(h[16:20], orig[12:16])
	binary.BigEndian.PutUint16(h[10:12], ^ipv4HeaderSum(h))
	icmp[0], icmp[1], icmp[2], icmp[3], icmp[4], icmp[5] = 3, 4, 0, 0, 0, 0
	binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
	binary.BigEndian.PutUint16(icmp[2:4], ^Checksum(icmp, 0))
	return start, l3 + 20 + 8 + qlen, ReplyICMP
}

// isICMPErrorProto reports an ICMP error that Parse could not look into (a first fragment).
func isICMPErrorProto(p *Packet) bool {
	return p.HasL4 && (p.L4Proto == ProtoICMP || p.L4Proto == ProtoICMPv6) &&
		isICMPError(p.Key.V6, p.ICMPType)
}

// unicastSource reports whether the source of the IP header h may receive an ICMP error
// (RFC 1122 3.2.2, RFC 4443 2.4 (e)): not unspecified, multicast, broadcast or loopback.
func unicastSource(h []byte, v6 bool) bool {
	if v6 {
		if h[8] == 0xff {
			return false
		}
		for _, b := range h[8:23] {
			if b != 0 {
				return true
			}
		}
		return h[23] > 1 // :: and ::1
	}
	a := h[12]
	if a == 0 || a == 127 || a >= 224 {
		return false
	}
	return true
}
