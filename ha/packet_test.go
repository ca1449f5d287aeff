package ha

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

var (
	src4 = netip.MustParseAddr("198.18.0.1")
	src6 = netip.MustParseAddr("fe80::1")
)

// slowChecksum is the reference: build the pseudo-header as bytes, sum 16-bit words in a
// uint64, fold at the end.
func slowChecksum(msg []byte, src, dst netip.Addr) uint16 {
	var ph []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ph = append(append(append(ph, s[:]...), d[:]...), 0, ProtoVRRP)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(msg)))
	} else {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
		ph = append(ph, 0, 0, 0, ProtoVRRP)
	}
	all := append(ph, msg...)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(binary.BigEndian.Uint16(all[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		msg := make([]byte, rng.IntN(300))
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		src, dst := src4, GroupV4
		if i%2 == 1 {
			src, dst = src6, GroupV6
		}
		if got, want := Checksum(msg, src, dst), slowChecksum(msg, src, dst); got != want {
			t.Fatalf("len %d %v: Checksum = %#04x, reference %#04x", len(msg), src, got, want)
		}
	}
}

func TestAdvertRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		src, dst netip.Addr
		addrs    []netip.Addr
		wantLen  int
	}{
		{"v4 multicast", src4, GroupV4, []netip.Addr{netip.MustParseAddr("198.19.0.10"), netip.MustParseAddr("198.19.0.11")}, 16},
		{"v4 unicast", src4, netip.MustParseAddr("198.18.0.2"), []netip.Addr{netip.MustParseAddr("198.19.0.10")}, 12},
		{"v6", src6, GroupV6, []netip.Addr{netip.MustParseAddr("fe80::10"), netip.MustParseAddr("2001:db8::10")}, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := Advert{VRID: 51, Priority: 150, Interval: 100, Addrs: c.addrs}
			b := AppendAdvert([]byte{0xaa}, &in, c.src, c.dst)
			if b[0] != 0xaa || len(b) != 1+c.wantLen {
				t.Fatalf("AppendAdvert wrote %d bytes after the prefix, want %d", len(b)-1, c.wantLen)
			}
			msg := b[1:]
			if msg[0] != 0x31 || msg[1] != 51 || msg[2] != 150 || int(msg[3]) != len(c.addrs) {
				t.Fatalf("header % x", msg[:8])
			}
			if got := binary.BigEndian.Uint16(msg[4:]); got != 100 {
				t.Fatalf("interval field %d", got)
			}
			if got, want := binary.BigEndian.Uint16(msg[6:]), slowChecksum(append(append([]byte{}, msg[:6]...), append([]byte{0, 0}, msg[8:]...)...), c.src, c.dst); got != want {
				t.Fatalf("checksum %#04x, reference %#04x", got, want)
			}
			var out Advert
			if err := ParseAdvert(msg, c.src, c.dst, &out); err != nil {
				t.Fatal(err)
			}
			if out.VRID != in.VRID || out.Priority != in.Priority || out.Interval != in.Interval ||
				len(out.Addrs) != len(in.Addrs) {
				t.Fatalf("decoded %+v, want %+v", out, in)
			}
			for i := range in.Addrs {
				if out.Addrs[i] != in.Addrs[i] {
					t.Fatalf("addr %d: %v, want %v", i, out.Addrs[i], in.Addrs[i])
				}
			}
			// The checksum covers the pseudo-header: another destination must fail.
			if err := ParseAdvert(msg, c.src, c.src, &out); !errors.Is(err, ErrChecksum) {
				t.Fatalf("wrong pseudo-header: err %v, want ErrChecksum", err)
			}
		})
	}
}

func TestParseAdvertErrors(t *testing.T) {
	good := AppendAdvert(nil, &Advert{VRID: 7, Priority: 100, Interval: 100,
		Addrs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}}, src4, GroupV4)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		b    []byte
		src  netip.Addr
		want error
	}{
		{"short", good[:7], src4, ErrTruncated},
		{"v2", mod(func(b []byte) []byte { b[0] = 0x21; return b }), src4, ErrVersion},
		{"type", mod(func(b []byte) []byte { b[0] = 0x32; return b }), src4, ErrType},
		{"count", mod(func(b []byte) []byte { b[3] = 2; return b }), src4, ErrAddrCount},
		{"extra byte", append(bytes.Clone(good), 0), src4, ErrAddrCount},
		{"family", good, src6, ErrFamily},
		{"checksum", mod(func(b []byte) []byte { b[2]++; return b }), src4, ErrChecksum},
	}
	for _, c := range cases {
		var adv Advert
		if err := ParseAdvert(c.b, c.src, GroupV4, &adv); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	// Every single-bit flip must be caught.
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			var adv Advert
			if err := ParseAdvert(b, src4, GroupV4, &adv); err == nil {
				t.Fatalf("bit %d of byte %d flipped: accepted", bit, i)
			}
		}
	}
	// A zero interval with a correct checksum is refused.
	z := AppendAdvert(nil, &Advert{VRID: 7, Priority: 100, Interval: 0}, src4, GroupV4)
	var adv Advert
	if err := ParseAdvert(z, src4, GroupV4, &adv); !errors.Is(err, ErrBadInterval) {
		t.Fatalf("zero interval: err %v", err)
	}
}

func TestParseAdvertNoAllocs(t *testing.T) {
	msg := AppendAdvert(nil, &Advert{VRID: 7, Priority: 100, Interval: 100,
		Addrs: []netip.Addr{netip.MustParseAddr("198.19.0.10"), netip.MustParseAddr("198.19.0.11")}}, src4, GroupV4)
	adv := Advert{Addrs: make([]netip.Addr, 0, 4)}
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if err := ParseAdvert(msg, src4, GroupV4, &adv); err != nil {
			t.Fatal(err)
		}
		buf = AppendAdvert(buf[:0], &adv, src4, GroupV4)
	})
	if allocs != 0 {
		t.Fatalf("ParseAdvert+AppendAdvert allocate %v times per run", allocs)
	}
}

func BenchmarkParseAdvert(b *testing.B) {
	msg := AppendAdvert(nil, &Advert{VRID: 7, Priority: 100, Interval: 100,
		Addrs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}}, src4, GroupV4)
	adv := Advert{Addrs: make([]netip.Addr, 0, 4)}
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseAdvert(msg, src4, GroupV4, &adv); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseAdvert: the decoder never panics, and whatever it accepts re-encodes to the same bytes.
func FuzzParseAdvert(f *testing.F) {
	f.Add(AppendAdvert(nil, &Advert{VRID: 1, Priority: 100, Interval: 100,
		Addrs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}}, src4, GroupV4), false)
	f.Add(AppendAdvert(nil, &Advert{VRID: 1, Priority: 255, Interval: 4095,
		Addrs: []netip.Addr{netip.MustParseAddr("fe80::10")}}, src6, GroupV6), true)
	f.Add([]byte{0x31, 1, 2, 0, 0, 1, 0, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst := src4, GroupV4
		if v6 {
			src, dst = src6, GroupV6
		}
		var adv Advert
		if err := ParseAdvert(b, src, dst, &adv); err != nil {
			if reasonOf(err) == dropNone {
				t.Fatalf("error %v has no drop reason", err)
			}
			return
		}
		// Reserved bits are not kept; otherwise the encoding is canonical.
		want := bytes.Clone(b)
		want[4] &= 0x0f
		got := AppendAdvert(nil, &adv, src, dst)
		want[6], want[7] = got[6], got[7]
		if !bytes.Equal(got, want) {
			t.Fatalf("re-encoded % x, input % x", got, b)
		}
		if Checksum(got, src, dst) != 0 {
			t.Fatal("re-encoded message fails its checksum")
		}
	})
}
