package lab

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func cmsg4(dst netip.Addr) []byte {
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	(*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)])).Addr = dst.As4()
	return b
}

func TestPktinfo(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")
	if got := pktinfoDst(cmsg4(v4)); got != v4 {
		t.Errorf("IPv4 pktinfo: %v", got)
	}
	// An IPV6_PKTINFO built for sending carries the address where a received one does.
	if got := pktinfoDst(pktinfoOOB(v6)); got != v6 {
		t.Errorf("IPv6 pktinfo: %v", got)
	}
	// Two messages: the first pktinfo wins; nothing usable gives the zero Addr.
	if got := pktinfoDst(append(cmsg4(v4), pktinfoOOB(v6)...)); got != v4 {
		t.Errorf("two messages: %v", got)
	}
	for _, b := range [][]byte{nil, {1, 2, 3}, cmsg4(v4)[:12], pktinfoOOB(netip.Addr{})} {
		if got := pktinfoDst(b); got.IsValid() {
			t.Errorf("pktinfoDst(% x) = %v, want none", b, got)
		}
	}
	if pktinfoOOB(netip.Addr{}) != nil {
		t.Error("pktinfoOOB of no address should be nil")
	}
}

// The control-message parser never panics, whatever the bytes.
func FuzzPktinfoDst(f *testing.F) {
	f.Add(cmsg4(netip.MustParseAddr("198.18.0.100")))
	f.Add(pktinfoOOB(netip.MustParseAddr("2001:2::100")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = pktinfoDst(b)
	})
}
