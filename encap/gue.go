package encap

import (
	"encoding/binary"
	"fmt"
)

// TunnelEncap is how Tunnel.Encap wraps a packet for its backend.
type TunnelEncap uint8

// The encapsulations. GUE and FOU put a UDP header between the outer and the inner IP
// header, whose source port Encap takes from the flow's hash, so that a backend NIC's RSS
// (which hashes the outer UDP ports) spreads the tunnelled flows over its queues, as it would
// spread the flows themselves; plain IPIP gives every flow from one LB the same outer
// addresses unless the tunnel source is a prefix.
const (
	// EncapIPIP: IPIP, IP6IP6, 6in4 or IPv4-in-IPv6 (IP protocol 4 or 41), the default.
	EncapIPIP TunnelEncap = iota
	// EncapGUE: Generic UDP Encapsulation (draft-ietf-intarea-gue) variant 0, a 4-byte GUE
	// header (version 0, no options, protocol 4 or 41) after the UDP header. A Linux host
	// decapsulates it with `ip fou add port PORT gue`.
	EncapGUE
	// EncapFOU: the inner IP packet right after the UDP header, the form Katran calls GUE (GUE
	// variant 1: the inner IP version nibble is the discriminator). A Linux host decapsulates it
	// with a gue port (both families) or `ip fou add port PORT ipproto 4` (or 41).
	EncapFOU

	numEncaps
)

// DefaultGUEPort is the outer UDP destination port of GUE and FOU when none is configured.
const DefaultGUEPort = 6080

var encapNames = [numEncaps]string{EncapIPIP: "ipip", EncapGUE: "gue", EncapFOU: "fou"}

// String returns the configuration name: "ipip", "gue" or "fou".
func (e TunnelEncap) String() string {
	if e < numEncaps {
		return encapNames[e]
	}
	return fmt.Sprintf("encap(%d)", uint8(e))
}

// ParseTunnelEncap parses "ipip", "gue" or "fou" ("" is ipip).
func ParseTunnelEncap(s string) (TunnelEncap, error) {
	if s == "" {
		return EncapIPIP, nil
	}
	for i, n := range encapNames {
		if s == n {
			return TunnelEncap(i), nil
		}
	}
	return 0, fmt.Errorf("%w: encap %q (want ipip, gue or fou)", ErrTunnelEncap, s)
}

// setUDP records the encapsulation's extra headers.
func (t *Tunnel) setUDP(e TunnelEncap, port uint16) error {
	switch e {
	case EncapIPIP:
		if port != 0 {
			return fmt.Errorf("%w: port %d set for ipip", ErrTunnelEncap, port)
		}
		return nil
	case EncapGUE:
		t.udpLen = 12
	case EncapFOU:
		t.udpLen = 8
	default:
		return fmt.Errorf("%w: %v", ErrTunnelEncap, e)
	}
	t.port = port
	if t.port == 0 {
		t.port = DefaultGUEPort
	}
	return nil
}

// fillUDPTemplate writes the constant part of the UDP (and GUE) header into u.
func (t *Tunnel) fillUDPTemplate(u []byte) {
	if t.udpLen == 0 {
		return
	}
	binary.BigEndian.PutUint16(u[2:4], t.port)
	// The GUE header (version 0, no control, no options, flags 0) but for its protocol.
	clear(u[8:t.udpLen])
}

// fillUDP completes the UDP header u (the template is in place) of a packet whose outer
// addresses are src and dst and whose payload is inner (the inner IP packet, innerProto 4 or
// 41 naming its family, p describing it): the source port from the flow hash, the length,
// the GUE protocol and the checksum. The checksum covers the inner packet; for a TCP or UDP
// packet whose own checksum is in place the inner transport part of that sum is known
// without reading the payload (a correct transport checksum makes segment plus pseudo-header
// sum to zero), so only the inner IP header is summed. A wrong inner checksum then gives a
// wrong outer one: the backend drops the packet either way.
func (t *Tunnel) fillUDP(u, src, dst, inner []byte, p *Packet, innerProto uint8, hash uint64) {
	ulen := t.udpLen + len(inner)
	binary.BigEndian.PutUint16(u[0:2], 0xc000|uint16(hash>>48)&0x3fff) // 49152..65535 (RFC 8086)
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	u[6], u[7] = 0, 0
	if t.udpLen == 12 {
		u[9] = innerProto
	}
	// The UDP header's words (checksum still 0) and the GUE header's, then the pseudo-header.
	sum := uint64(binary.BigEndian.Uint32(u[0:4])) + uint64(binary.BigEndian.Uint32(u[4:8]))
	if t.udpLen == 12 {
		sum += uint64(binary.BigEndian.Uint32(u[8:12]))
	}
	sum += pseudoSum(src, dst, ProtoUDP, ulen) + uint64(innerSum(inner, p))
	binary.BigEndian.PutUint16(u[6:8], udpNonZero(^fold64(sum, 0)))
}

// innerSum returns the ones' complement sum of the IP packet inner, which p describes.
func innerSum(inner []byte, p *Packet) uint16 {
	l4 := p.L4Off - p.L3Off
	seg := len(inner) - l4
	ok := p.HasL4 && !p.Fragment && !p.ICMPError && l4 <= len(inner)
	switch {
	case !ok:
	case p.L4Proto == ProtoTCP:
	case p.L4Proto == ProtoUDP:
		// A UDP checksum of 0 (IPv4: none) or a UDP length short of the IP payload leaves
		// bytes the transport checksum does not vouch for.
		ok = seg >= 8 && binary.BigEndian.Uint16(inner[l4+6:]) != 0 && int(binary.BigEndian.Uint16(inner[l4+4:])) == seg
	default:
		ok = false
	}
	if p.Key.V6 && l4 != 40 { // extension headers (a routing header changes the pseudo-header)
		ok = false
	}
	if !ok {
		return Checksum(inner, 0)
	}
	var ph uint16
	if p.Key.V6 {
		ph = fold64(pseudoSum(inner[8:24], inner[24:40], p.L4Proto, seg), 0)
	} else {
		ph = fold64(pseudoSum(inner[12:16], inner[16:20], p.L4Proto, seg), 0)
	}
	hs := uint16(0)
	if l4 == 20 && !p.Key.V6 {
		hs = ipv4HeaderSum(inner[:20])
	} else {
		hs = Checksum(inner[:l4], 0)
	}
	return ChecksumCombine(hs, ^ph)
}

// MarshalText returns the configuration name (JSON and YAML write it as a string).
func (e TunnelEncap) MarshalText() ([]byte, error) {
	if e >= numEncaps {
		return nil, fmt.Errorf("%w: %d", ErrTunnelEncap, uint8(e))
	}
	return []byte(e.String()), nil
}

// UnmarshalText parses a configuration name with ParseTunnelEncap.
func (e *TunnelEncap) UnmarshalText(b []byte) error {
	v, err := ParseTunnelEncap(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// pseudoSum returns the TCP/UDP pseudo-header's words summed, unfolded: src and dst are both
// 4 or both 16 bytes.
func pseudoSum(src, dst []byte, proto uint8, n int) uint64 {
	s := uint64(proto) + uint64(n)
	if len(src) == 4 {
		return s + uint64(binary.BigEndian.Uint32(src)) + uint64(binary.BigEndian.Uint32(dst))
	}
	_, _ = src[15], dst[15]
	for i := 0; i < 16; i += 4 {
		s += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
	}
	return s
}
