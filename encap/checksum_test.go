package encap

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func naiveWithInitial(b []byte, initial uint16) uint16 {
	s := uint32(naiveSum(b)) + uint32(initial)
	return uint16(s&0xffff + s>>16)
}

func TestChecksumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096+8)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	lengths := []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 127, 1499, 1500, 4096}
	for l := 0; l < 300; l++ {
		lengths = append(lengths, l)
	}
	for align := 0; align < 8; align++ {
		for _, l := range lengths {
			b := buf[align : align+l]
			for _, init := range []uint16{0, 1, 0xfffe, 0xffff, uint16(rng.Uint32())} {
				if got, want := Checksum(b, init), naiveWithInitial(b, init); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
					t.Fatalf("align %d len %d init %#x: Checksum %#04x, naive %#04x", align, l, init, got, want)
				}
			}
		}
	}
	// All ones: the carries must fold back in.
	ones := make([]byte, 4096)
	for i := range ones {
		ones[i] = 0xff
	}
	if got := Checksum(ones, 0); got != 0xffff {
		t.Errorf("all ones: %#04x", got)
	}
}

func TestChecksumSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 1000)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	whole := Checksum(b, 0)
	for cut := 0; cut <= len(b); cut += 2 {
		if got := Checksum(b[cut:], Checksum(b[:cut], 0)); got != whole {
			t.Fatalf("cut %d: %#04x != %#04x", cut, got, whole)
		}
		if got := ChecksumCombine(Checksum(b[:cut], 0), Checksum(b[cut:], 0)); got != whole {
			t.Fatalf("combine at %d: %#04x != %#04x", cut, got, whole)
		}
	}
}

// TestChecksumUpdateMatchesRecompute changes 16-bit words and 4/16-byte fields of random
// buffers, at every alignment, and compares the RFC 1624 update with a full recomputation.
func TestChecksumUpdateMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for iter := 0; iter < 20000; iter++ {
		align := iter % 8
		n := 2 * (20 + rng.IntN(700))
		raw := make([]byte, n+align)
		b := raw[align:]
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if iter%5 == 0 { // zero-heavy buffers reach the 0x0000/0xffff corner cases
			for i := range b {
				if rng.IntN(4) != 0 {
					b[i] = 0
				}
			}
		}
		b[0] |= 1 // never all zero
		csOff := 2 * rng.IntN(n/2)
		binary.BigEndian.PutUint16(b[csOff:], 0)
		binary.BigEndian.PutUint16(b[csOff:], ^Checksum(b, 0))

		fieldLen := []int{2, 4, 16}[rng.IntN(3)]
		fOff := 2 * rng.IntN((n-fieldLen)/2+1)
		if fOff <= csOff+1 && csOff < fOff+fieldLen { // keep the field off the checksum
			continue
		}
		old := append([]byte(nil), b[fOff:fOff+fieldLen]...)
		nw := make([]byte, fieldLen)
		for i := range nw {
			nw[i] = byte(rng.Uint32())
		}
		xs := binary.BigEndian.Uint16(b[csOff:])
		var upd uint16
		if fieldLen == 2 {
			upd = ChecksumUpdate16(xs, binary.BigEndian.Uint16(old), binary.BigEndian.Uint16(nw))
		} else {
			upd = ChecksumUpdate(xs, old, nw)
		}
		copy(b[fOff:], nw)
		binary.BigEndian.PutUint16(b[csOff:], 0)
		full := ^naiveSum(b)
		if upd != full {
			t.Fatalf("iter %d: incremental %#04x, recomputed %#04x", iter, upd, full)
		}
	}
}

func TestPseudoHeaderChecksum(t *testing.T) {
	src, dst := []byte{198, 18, 1, 10}, []byte{198, 19, 0, 10}
	want := naiveSum(src, dst, []byte{0, ProtoTCP, 0x05, 0xdc})
	if got := PseudoHeaderChecksum(ProtoTCP, src, dst, 1500); got != want {
		t.Errorf("v4: %#04x, want %#04x", got, want)
	}
	s6, d6 := ip6Client.To16(), ip6VIP.To16()
	want = naiveSum(s6, d6, []byte{0, 1, 0, 0, 0, 0, 0, ProtoUDP})
	if got := PseudoHeaderChecksum(ProtoUDP, s6, d6, 65536); got != want {
		t.Errorf("v6: %#04x, want %#04x", got, want)
	}
}

// TestFoldShort holds the short folds to fold64 over their whole domain's edges and at
// random: fold48 under 2^48, fold32 under 2^32.
func TestFoldShort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 48))
	vals := []uint64{0, 1, 0xfffe, 0xffff, 0x10000, 0x1fffe, 0x1ffff, 0xfffeffff, 0xffff0000, 1<<32 - 1,
		1 << 32, 1<<32 + 0xfffe, 0xffff_ffff_ffff, 0xffff_0000_ffff, 0xfffe_ffff_ffff}
	for range 200000 {
		vals = append(vals, r.Uint64()>>(16+r.IntN(48)))
	}
	for _, v := range vals {
		if v >= 1<<48 {
			continue
		}
		if got, want := fold48(v), fold64(v, 0); got != want {
			t.Fatalf("fold48(%#x) = %#x, fold64 %#x", v, got, want)
		}
		if v >= 1<<32 {
			continue
		}
		if got, want := fold32(v), fold64(v, 0); got != want {
			t.Fatalf("fold32(%#x) = %#x, fold64 %#x", v, got, want)
		}
	}
}
