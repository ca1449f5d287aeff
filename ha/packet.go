package ha

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/xlb-dev/xlb/encap"
)

// VRRPv3 advertisement (RFC 5798 section 5.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|(rsvd) |     Max Adver Int     |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IPvX Address(es)                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	// ProtoVRRP is the IP protocol number of VRRP.
	ProtoVRRP = 112
	// HeaderLen is the length of the fixed VRRP header, before the addresses.
	HeaderLen = 8
	// MaxInterval is the largest Max Adver Int (12 bits of centiseconds).
	MaxInterval = 4095

	vrrpVersion  = 3
	typeAdvert   = 1
	offVerType   = 0
	offVRID      = 1
	offPriority  = 2
	offCount     = 3
	offInterval  = 4
	offChecksum  = 6
	vrrpTTL      = 255
	intervalMask = 0x0fff
)

// Multicast groups VRRP advertisements are sent to (RFC 5798 section 5.1.1.2 and 5.1.2.2).
var (
	GroupV4 = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	GroupV6 = netip.MustParseAddr("ff02::12")
)

// Errors returned by ParseAdvert; each one is also counted under its DropReason.
var (
	ErrTruncated   = errors.New("vrrp: packet truncated")
	ErrVersion     = errors.New("vrrp: not version 3")
	ErrType        = errors.New("vrrp: not an advertisement")
	ErrAddrCount   = errors.New("vrrp: address count disagrees with packet length")
	ErrChecksum    = errors.New("vrrp: bad checksum")
	ErrFamily      = errors.New("vrrp: address family mismatch")
	ErrBadInterval = errors.New("vrrp: advertisement interval is zero")
)

// Advert is a decoded VRRPv3 advertisement.
type Advert struct {
	VRID     uint8
	Priority uint8
	// Interval is the Max Adver Int in centiseconds (1..4095).
	Interval uint16
	// Addrs are the virtual addresses; ParseAdvert reuses the slice's backing array.
	Addrs []netip.Addr
}

// header is a view of the fixed VRRP header; call len check before the accessors.
type header []byte

func (h header) version() uint8   { return h[offVerType] >> 4 }
func (h header) typ() uint8       { return h[offVerType] & 0x0f }
func (h header) vrid() uint8      { return h[offVRID] }
func (h header) priority() uint8  { return h[offPriority] }
func (h header) count() int       { return int(h[offCount]) }
func (h header) interval() uint16 { return binary.BigEndian.Uint16(h[offInterval:]) & intervalMask }

// ParseAdvert validates b (the VRRP message, IP header removed) received from src to dst and
// decodes it into adv. It checks the version, type, length and the checksum over the IPv4 or
// IPv6 pseudo-header; it does not check the TTL (the caller has it) or the VRID. adv.Addrs is
// reset and refilled in place.
func ParseAdvert(b []byte, src, dst netip.Addr, adv *Advert) error {
	if len(b) < HeaderLen {
		return ErrTruncated
	}
	h := header(b)
	if h.version() != vrrpVersion {
		return ErrVersion
	}
	if h.typ() != typeAdvert {
		return ErrType
	}
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return ErrFamily
	}
	alen := 16
	if src.Is4() {
		alen = 4
	}
	if len(b) != HeaderLen+h.count()*alen {
		return ErrAddrCount
	}
	if Checksum(b, src, dst) != 0 {
		return ErrChecksum
	}
	if h.interval() == 0 {
		return ErrBadInterval
	}
	adv.VRID = h.vrid()
	adv.Priority = h.priority()
	adv.Interval = h.interval()
	adv.Addrs = adv.Addrs[:0]
	for off := HeaderLen; off < len(b); off += alen {
		if alen == 4 {
			adv.Addrs = append(adv.Addrs, netip.AddrFrom4([4]byte(b[off:off+4])))
		} else {
			adv.Addrs = append(adv.Addrs, netip.AddrFrom16([16]byte(b[off:off+16])))
		}
	}
	return nil
}

// AppendAdvert appends the encoded advertisement, checksummed for src -> dst, to b. All of
// adv.Addrs must be of src's family and there must be at most 255 of them (Config.Validate
// ensures both); an address of the other family is written as zeros.
func AppendAdvert(b []byte, adv *Advert, src, dst netip.Addr) []byte {
	start := len(b)
	b = append(b, vrrpVersion<<4|typeAdvert, adv.VRID, adv.Priority, uint8(len(adv.Addrs)))
	b = binary.BigEndian.AppendUint16(b, adv.Interval&intervalMask)
	b = append(b, 0, 0)
	v4 := src.Is4()
	for _, a := range adv.Addrs {
		switch {
		case v4 && a.Is4():
			a4 := a.As4()
			b = append(b, a4[:]...)
		case !v4 && a.Is6() && !a.Is4In6():
			a16 := a.As16()
			b = append(b, a16[:]...)
		case v4:
			b = append(b, 0, 0, 0, 0)
		default:
			b = append(b, make([]byte, 16)...)
		}
	}
	c := Checksum(b[start:], src, dst)
	binary.BigEndian.PutUint16(b[start+offChecksum:], c)
	return b
}

// Checksum is the VRRPv3 checksum of msg sent from src to dst: the one's complement of the
// one's complement sum of the IPv4 or IPv6 pseudo-header and msg. Over a message that carries
// a correct checksum it returns 0.
func Checksum(msg []byte, src, dst netip.Addr) uint16 {
	return ^encap.Checksum(msg, encap.PseudoHeaderChecksum(ProtoVRRP, src.AsSlice(), dst.AsSlice(), len(msg)))
}
