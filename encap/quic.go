package encap

// QUIC packet headers as a load balancer sees them (RFC 8999, the version-independent
// properties, and RFC 9000 section 17):
//
//	long header:  |1|x x x x x x x| Version (32) | DCID Len (8) | DCID (0..255) | SCID Len | SCID | ...
//	short header: |0|x x x x x x x| DCID (length known only to the endpoints and the LB) | ...
//
// The first bit tells the two forms apart. A long header carries its DCID's length; a short
// header does not, so the load balancer must know it from configuration.

// MaxQUICConnIDLen is the longest connection ID QUIC version 1 and 2 allow (RFC 9000, 17.2).
// RFC 8999 lets other versions use up to 255 bytes; QUICDestConnID refuses those.
const MaxQUICConnIDLen = 20

// QUICHeader is what QUICDestConnID learns from a QUIC packet's first bytes.
type QUICHeader struct {
	Long bool // a long header (Initial, 0-RTT, Handshake, Retry, version negotiation)
	// Version is the long header's version field (0 for version negotiation); 0 for a short
	// header.
	Version uint32
	// DCIDOff and DCIDLen locate the destination connection ID within the UDP payload.
	DCIDOff, DCIDLen int
}

// QUICDestConnID finds the destination connection ID of the QUIC packet that starts the UDP
// payload b. shortLen is the connection ID length servers use in short headers (which do not
// carry it). It reports false when b is too short for the header it starts, or when a long
// header announces a connection ID longer than MaxQUICConnIDLen. It reads nothing but the
// header's first bytes, allocates nothing, and never looks at the (protected) rest.
func QUICDestConnID(b []byte, shortLen int) (QUICHeader, bool) {
	var h QUICHeader
	if len(b) < 1 {
		return h, false
	}
	if b[0]&0x80 == 0 {
		if shortLen <= 0 || shortLen > MaxQUICConnIDLen || len(b) < 1+shortLen {
			return h, false
		}
		h.DCIDOff, h.DCIDLen = 1, shortLen
		return h, true
	}
	if len(b) < 6 {
		return h, false
	}
	h.Long = true
	h.Version = uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	n := int(b[5])
	if n > MaxQUICConnIDLen || len(b) < 6+n {
		return h, false
	}
	h.DCIDOff, h.DCIDLen = 6, n
	return h, true
}

// UDPPayload returns the payload of the UDP datagram p describes in pkt (the bytes Parse
// read p from), up to the UDP length field, aliasing pkt. It returns nil unless p is a UDP
// packet whose header Parse found (not a fragment, not an ICMP error).
func (p *Packet) UDPPayload(pkt []byte) []byte {
	if p.L4Proto != ProtoUDP || !p.HasL4 || p.Fragment || p.ICMPError || p.IPEnd > len(pkt) || p.L4Off+8 > p.IPEnd {
		return nil
	}
	ulen := int(pkt[p.L4Off+4])<<8 | int(pkt[p.L4Off+5])
	if ulen < 8 || p.L4Off+ulen > p.IPEnd {
		return nil
	}
	return pkt[p.L4Off+8 : p.L4Off+ulen]
}
