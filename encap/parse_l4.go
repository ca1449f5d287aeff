package encap

import "encoding/binary"

// isICMPError reports whether an ICMP (v6 false) or ICMPv6 (v6 true) type is an error message
// that quotes the packet that caused it.
func isICMPError(v6 bool, typ uint8) bool {
	if v6 {
		return typ >= 1 && typ <= 4 // unreachable, packet too big, time exceeded, parameter problem
	}
	return typ == 3 || typ == 11 || typ == 12 // unreachable (incl. frag needed), time exceeded, parameter problem
}

func (p *Packet) parseL4(pkt []byte) Reason {
	if p.FragOffset != 0 { // a non-first fragment carries no L4 header
		return OK
	}
	seg := pkt[p.L4Off:p.IPEnd]
	switch p.L4Proto {
	case ProtoTCP:
		if len(seg) < 20 {
			return p.shortL4(Truncated)
		}
		doff := int(seg[12]>>4) * 4
		if doff < 20 || doff > len(seg) {
			return p.shortL4(BadL4Header)
		}
		p.HasL4 = true
		p.TCPFlags = seg[13]
		if !p.Fragment {
			p.Key.SrcPort = binary.BigEndian.Uint16(seg[0:2])
			p.Key.DstPort = binary.BigEndian.Uint16(seg[2:4])
		}
	case ProtoUDP:
		if len(seg) < 8 {
			return p.shortL4(Truncated)
		}
		if !p.Fragment {
			ulen := int(binary.BigEndian.Uint16(seg[4:6]))
			if ulen < 8 || ulen > len(seg) {
				return BadLength
			}
			p.Key.SrcPort = binary.BigEndian.Uint16(seg[0:2])
			p.Key.DstPort = binary.BigEndian.Uint16(seg[2:4])
		}
		p.HasL4 = true
	case ProtoICMP, ProtoICMPv6:
		if (p.L4Proto == ProtoICMPv6) != p.Key.V6 { // ICMPv6 over IPv4 or ICMP over IPv6
			return OK
		}
		if len(seg) < 8 {
			return p.shortL4(Truncated)
		}
		p.HasL4 = true
		p.ICMPType, p.ICMPCode = seg[0], seg[1]
		if !p.Fragment && isICMPError(p.Key.V6, p.ICMPType) {
			return p.parseQuote(pkt)
		}
	}
	return OK
}

// shortL4 is the verdict for an L4 header that does not fit: fine in a first fragment (the
// header may continue in the next one and the key has no ports anyway), r otherwise.
func (p *Packet) shortL4(r Reason) Reason {
	if p.Fragment {
		return OK
	}
	return r
}

// parseQuote reads the packet an ICMP error quotes and sets the key to its key reversed.
func (p *Packet) parseQuote(pkt []byte) Reason {
	in := p.L4Off + 8
	q := pkt[in:p.IPEnd]
	var k FlowKey
	var l4 int
	frag, later := false, false // a fragment; a non-first one, without an L4 header
	if p.Key.V6 {
		if len(q) < 40 || q[0]>>4 != 6 {
			return BadICMPQuote
		}
		ext, r := walkExt(q, 40, q[6])
		if r == TooManyExtHeaders {
			return r
		}
		if r != OK {
			return BadICMPQuote
		}
		k.V6 = true
		k.Proto = ext.proto
		copy(k.Src[:], q[8:24])
		copy(k.Dst[:], q[24:40])
		l4, frag, later = ext.l4, ext.fragment, ext.fragOff != 0
	} else {
		if len(q) < 20 || q[0]>>4 != 4 {
			return BadICMPQuote
		}
		ihl := int(q[0]&0x0f) * 4
		if ihl < 20 || ihl > len(q) {
			return BadICMPQuote
		}
		k.Proto = q[9]
		copy(k.Src[:4], q[12:16])
		copy(k.Dst[:4], q[16:20])
		l4 = ihl
		fo := binary.BigEndian.Uint16(q[6:8])
		frag, later = fo&0x3fff != 0, fo&0x1fff != 0
	}
	if len(q) >= l4+8 && !later {
		p.InnerL4Off = in + l4
	}
	if !frag && (k.Proto == ProtoTCP || k.Proto == ProtoUDP) {
		// The quote must reach the ports (RFC 792: IP header + 8 bytes).
		if p.InnerL4Off == 0 {
			return BadICMPQuote
		}
		k.SrcPort = binary.BigEndian.Uint16(q[l4 : l4+2])
		k.DstPort = binary.BigEndian.Uint16(q[l4+2 : l4+4])
	}
	p.ICMPError = true
	p.InnerL3Off = in
	p.Key = FlowKey{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto, V6: k.V6}
	return OK
}
