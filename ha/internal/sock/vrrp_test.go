package sock

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseIPv4(t *testing.T) {
	pkt := []byte{
		0x46, 0, 0, 32, 0, 0, 0, 0, 255, 112, 0, 0, // IHL 6 (one option word), total 32
		198, 18, 0, 2, 224, 0, 0, 18,
		1, 1, 1, 1, // option
		0x31, 42, 100, 1, 0, 10, 0, 0, // VRRP header
		0xee, // trailing link padding beyond the total length
	}
	msg, m, err := parseIPv4(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != 8 || msg[0] != 0x31 || m.TTL != 255 ||
		m.Src != netip.MustParseAddr("198.18.0.2") || m.Dst != netip.MustParseAddr("224.0.0.18") {
		t.Fatalf("msg % x meta %+v", msg, m)
	}
	for _, bad := range [][]byte{pkt[:19], {0x44, 0, 0, 20, 0, 0, 0, 0, 255, 112, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8},
		{0x45, 0, 0, 10, 0, 0, 0, 0, 255, 112, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}} {
		if _, _, err := parseIPv4(bad); !errors.Is(err, ErrShort) {
			t.Errorf("% x: err %v", bad, err)
		}
	}
}

// FuzzParseIPv4: never panics; an accepted datagram's message lies within it after the header.
func FuzzParseIPv4(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 198, 18, 0, 2, 224, 0, 0, 18, 0x31, 1, 1, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, _, err := parseIPv4(b)
		if err != nil {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(msg) > len(b)-ihl {
			t.Fatalf("ihl %d, message of %d bytes from %d", ihl, len(msg), len(b))
		}
	})
}
