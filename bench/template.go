package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlb-dev/xlb/encap"
)

// Proto is the transport of the generated frames.
type Proto uint8

// Protocols the generator sends.
const (
	UDP    Proto = iota // UDP datagrams
	TCPSYN              // TCP SYN segments (every packet opens a connection)
)

func (p Proto) String() string {
	if p == TCPSYN {
		return "tcp-syn"
	}
	return "udp"
}

// Frame sizes follow RFC 2544: Size is the Ethernet frame length including its 4-byte FCS,
// which the kernel adds, so the bytes written are Size-4.
const (
	fcsLen       = 4
	MinFrameSize = 64
	// MaxFrameSize is what fits a 1600-byte MTU link with the 20-byte tunnel header added.
	MaxFrameSize = 1518

	ethLen  = 14
	ipv4Len = 20
	udpLen  = 8
	tcpLen  = 20

	// The payload starts with magic then the send time (nanoseconds on the generator's
	// clock), when the payload has room for both.
	payloadMagic = 0x584c4242 // "XLBB"
	stampLen     = 12
)

// ErrTemplate is wrapped by every error NewTemplate returns.
var ErrTemplate = errors.New("bench: invalid frame template")

// TemplateConfig describes the frames of one traffic stream.
type TemplateConfig struct {
	Proto   Proto
	Size    int // Ethernet frame length with FCS, MinFrameSize..MaxFrameSize
	SrcMAC  [6]byte
	DstMAC  [6]byte
	Dst     netip.Addr // destination (the VIP), IPv4
	DstPort uint16
	// SrcPool is where flow source addresses come from (IPv4, inside 198.18.0.0/15). Flow i
	// has source port 1024 + i%64000 and the (i/64000+1)th address of the pool.
	SrcPool netip.Prefix
	// Flows is the number of distinct flows, at least 1 and at most what the pool holds.
	Flows int
}

// portsPerAddr is how many source ports a pool address gives flows.
const portsPerAddr = 64000

// benchRange is RFC 2544's benchmarking range: every generated address lies inside it.
var benchRange = netip.MustParsePrefix("198.18.0.0/15")

// Template is a prebuilt frame and the partial checksums that let Patch write any flow's
// source address and port, and a timestamp, with correct IPv4 and L4 checksums in a few
// additions. It is read-only after NewTemplate and safe for concurrent use.
type Template struct {
	cfg     TemplateConfig
	frame   []byte
	ipSum   uint32 // IPv4 header sum without the source address
	l4Sum   uint32 // L4 sum (pseudo header included) without source, source port and stamp
	l4Off   int
	csumOff int // offset of the L4 checksum
	stampAt int // offset of the payload's magic, or -1 when the payload is too short
	pool    uint32
	poolN   uint32 // usable addresses in the pool
}

// NewTemplate builds the frame of cfg.
func NewTemplate(cfg TemplateConfig) (*Template, error) {
	bad := func(f string, a ...any) (*Template, error) {
		return nil, fmt.Errorf("%w: %s", ErrTemplate, fmt.Sprintf(f, a...))
	}
	if cfg.Size < MinFrameSize || cfg.Size > MaxFrameSize {
		return bad("frame size %d (want %d..%d)", cfg.Size, MinFrameSize, MaxFrameSize)
	}
	if !cfg.Dst.Is4() || !benchRange.Contains(cfg.Dst) {
		return bad("destination %v (want IPv4 inside %v)", cfg.Dst, benchRange)
	}
	p := cfg.SrcPool.Masked()
	if !p.Addr().Is4() || p.Bits() < benchRange.Bits() || !benchRange.Contains(p.Addr()) || p.Bits() > 30 {
		return bad("source pool %v (want an IPv4 prefix /15../30 inside %v)", cfg.SrcPool, benchRange)
	}
	t := &Template{cfg: cfg, pool: be32(p.Addr().As4()), poolN: 1<<(32-p.Bits()) - 2}
	if cfg.Flows < 1 || uint64(cfg.Flows) > uint64(t.poolN)*portsPerAddr {
		return bad("%d flows (want 1..%d for pool %v)", cfg.Flows, uint64(t.poolN)*portsPerAddr, p)
	}
	l4len, proto := udpLen, uint8(17)
	if cfg.Proto == TCPSYN {
		l4len, proto = tcpLen, 6
	}
	n := cfg.Size - fcsLen
	b := make([]byte, n)
	copy(b[0:6], cfg.DstMAC[:])
	copy(b[6:12], cfg.SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen:]
	ipTotal := max(n-ethLen, ipv4Len+l4len)
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(ipTotal))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	dst := cfg.Dst.As4()
	copy(ip[16:20], dst[:])
	t.ipSum = sum16(ip[:ipv4Len])
	t.l4Off = ethLen + ipv4Len
	l4 := b[t.l4Off:]
	binary.BigEndian.PutUint16(l4[2:], cfg.DstPort)
	seg := ipTotal - ipv4Len
	if cfg.Proto == TCPSYN {
		binary.BigEndian.PutUint32(l4[4:], 0x12345678) // ISN
		l4[12], l4[13] = 5<<4, 0x02                    // data offset, SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)     // window
		t.csumOff = t.l4Off + 16
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(seg))
		t.csumOff = t.l4Off + 6
	}
	t.stampAt = -1
	if pay := t.l4Off + l4len; ipTotal-ipv4Len-l4len >= stampLen {
		t.stampAt = pay
		binary.BigEndian.PutUint32(b[pay:], payloadMagic)
	}
	// Pseudo header: destination, protocol, length (the source is added per flow).
	t.l4Sum = sum16(dst[:]) + uint32(proto) + uint32(seg) + sum16(l4[:seg])
	t.frame = b
	return t, nil
}

// Config returns the template's configuration.
func (t *Template) Config() TemplateConfig { return t.cfg }

// Len is the number of bytes of a frame (Size minus the FCS).
func (t *Template) Len() int { return len(t.frame) }

// HasStamp reports whether the frames carry a send timestamp (the payload has room).
func (t *Template) HasStamp() bool { return t.stampAt >= 0 }

// Flow returns the source address and port of flow i (taken modulo Flows).
func (t *Template) Flow(i uint64) (netip.Addr, uint16) {
	src, port := t.flow(i)
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], src)
	return netip.AddrFrom4(a), port
}

func (t *Template) flow(i uint64) (uint32, uint16) {
	i %= uint64(t.cfg.Flows)
	return t.pool + 1 + uint32(i/portsPerAddr), uint16(1024 + i%portsPerAddr)
}

// Write copies the template into dst (at least Len bytes) and makes it flow i with stamp.
func (t *Template) Write(dst []byte, flow, stamp uint64) {
	copy(dst, t.frame)
	t.Patch(dst, flow, stamp)
}

// Patch turns dst, which holds the template (from Write), into flow i with the send time
// stamp: source address, source port, timestamp and both checksums. It allocates nothing.
func (t *Template) Patch(dst []byte, flow, stamp uint64) {
	src, port := t.flow(flow)
	ip := dst[ethLen : ethLen+ipv4Len]
	binary.BigEndian.PutUint32(ip[12:], src)
	s := uint32(src>>16) + src&0xffff
	binary.BigEndian.PutUint16(ip[10:], ^fold(t.ipSum+s))
	binary.BigEndian.PutUint16(dst[t.l4Off:], port)
	l := t.l4Sum + s + uint32(port)
	if t.stampAt >= 0 {
		binary.BigEndian.PutUint64(dst[t.stampAt+4:], stamp)
		l += uint32(stamp>>48) + uint32(stamp>>32)&0xffff + uint32(stamp>>16)&0xffff + uint32(stamp)&0xffff
	}
	c := ^fold(l)
	if c == 0 && t.cfg.Proto == UDP {
		c = 0xffff // UDP sends a computed zero as all ones
	}
	binary.BigEndian.PutUint16(dst[t.csumOff:], c)
}

// sum16 is the ones' complement sum of b (encap.Checksum), widened so sums of several parts
// can be added before one fold.
func sum16(b []byte) uint32 { return uint32(encap.Checksum(b, 0)) }

// fold folds a 32-bit one's-complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }
