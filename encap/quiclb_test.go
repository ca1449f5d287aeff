package encap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// The test vectors of draft-ietf-quic-load-balancers (section "Load Balancer Test
// Vectors", unchanged from draft 19 to the working copy of 2026). Two of them are misprinted
// in the draft, and the comments say how they are read here.
func TestQUICLBDraftVectors(t *testing.T) {
	const key = "8f95f09245765f80256934e50c66207f"
	for _, v := range []struct {
		name       string
		cr         uint8
		sid, nonce string
		key        string
		cid        string
	}{
		{"plaintext", 0, "c4605e", "4504cc4f", "", "07c4605e4504cc4f"},
		// Printed as "1 350d28b420 3487d970b 20a350d28b4203487d970b": the nonce has 9 hex
		// digits, so one is missing, and the first octet is garbled. Here: the nonce padded
		// to 5 bytes with a zero digit and the first octet 0x2a (config 1, length 10).
		{"plaintext, config 1", 1, "350d28b420", "3487d970b0", "", "2a350d28b4203487d970b0"},
		{"four-pass, odd length", 0, "ed793a", "ee080dbf", key, "0720b1d07b359d3c"},
		{"four-pass, server ID longer than nonce", 1, "ed793a51d49b8f5fab65", "ee080dbf48", key,
			"2fcc381bc74cb4fbad2823a3d1f8fed2"},
		{"single pass", 2, "ed793a51d49b8f5f", "ee080dbf48c0d1e5", key, "504dd2d05a7b0de9b2b9907afb5ecf8cc3"},
		// Printed with the first octet 0x12 (config 0, length 18) since the draft rearranged
		// expand() in January 2024; earlier versions had 0x72 (config 3, length 18), which is
		// what this configuration writes. The 18 ciphertext bytes are as printed.
		{"four-pass, even length", 3, "ed793a51d49b8f5fab", "ee080dbf48c0d1e55d", key,
			"725779c9cc86beb3a3a4a3ca96fce4bfe0cdbc"},
	} {
		t.Run(v.name, func(t *testing.T) {
			sid, nonce, cid := unhex(t, v.sid), unhex(t, v.nonce), unhex(t, v.cid)
			var k []byte
			if v.key != "" {
				k = unhex(t, v.key)
			}
			q, err := NewQUICLB(QUICLBConfig{ConfigID: v.cr, ServerIDLen: len(sid), NonceLen: len(nonce), Key: k})
			if err != nil {
				t.Fatal(err)
			}
			got, err := q.Encode(make([]byte, 20), sid, nonce)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, cid) {
				t.Errorf("encode: %x, want %x", got, cid)
			}
			var sc QUICScratch
			s, ok := q.ServerID(cid, &sc)
			if !ok || !bytes.Equal(s, sid) {
				t.Errorf("decode: %x %v, want %x", s, ok, sid)
			}
		})
	}
}

// TestQUICLBDraftExample follows the draft's worked example of the four-pass algorithm.
func TestQUICLBDraftExample(t *testing.T) {
	q, err := NewQUICLB(QUICLBConfig{ServerIDLen: 3, NonceLen: 4, Key: unhex(t, "fdf726a9893ec05c0632d3956680baf0")})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := q.Encode(make([]byte, 8), unhex(t, "31441a"), unhex(t, "9c69c275"))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "0767947d29be054a"); !bytes.Equal(cid, want) {
		t.Fatalf("cid %x, want %x", cid, want)
	}
}

// TestQUICLBRoundTrip encodes and decodes random server IDs for every length combination in
// both modes, and checks that a connection ID of another configuration does not decode.
func TestQUICLBRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := make([]byte, 16)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	var sc QUICScratch
	for sidLen := 1; sidLen <= 15; sidLen++ {
		for nonceLen := 4; sidLen+nonceLen <= 19; nonceLen++ {
			for _, k := range [][]byte{nil, key} {
				q, err := NewQUICLB(QUICLBConfig{ConfigID: 5, ServerIDLen: sidLen, NonceLen: nonceLen, Key: k})
				if err != nil {
					t.Fatal(err)
				}
				for range 8 {
					sid, nonce := make([]byte, sidLen), make([]byte, nonceLen)
					for i := range sid {
						sid[i] = byte(r.Uint32())
					}
					for i := range nonce {
						nonce[i] = byte(r.Uint32())
					}
					cid, err := q.Encode(make([]byte, 20), sid, nonce)
					if err != nil {
						t.Fatal(err)
					}
					if len(cid) != q.ConnIDLen() || cid[0]>>5 != 5 || int(cid[0]&0x1f) != sidLen+nonceLen {
						t.Fatalf("first octet %#x len %d", cid[0], len(cid))
					}
					if k != nil && bytes.Contains(cid[1:], sid) && sidLen > 2 {
						t.Fatalf("encrypted cid %x shows the server ID %x", cid, sid)
					}
					got, ok := q.ServerID(cid, &sc)
					if !ok || !bytes.Equal(got, sid) {
						t.Fatalf("sid %d nonce %d key %v: decoded %x %v, want %x", sidLen, nonceLen, k != nil, got, ok, sid)
					}
					if _, ok := q.ServerID(cid[:len(cid)-1], &sc); ok {
						t.Fatal("a short connection ID decoded")
					}
					cid[0] = cid[0]&0x1f | 4<<5
					if _, ok := q.ServerID(cid, &sc); ok {
						t.Fatal("a connection ID of config 4 decoded under config 5")
					}
				}
			}
		}
	}
}

func TestQUICLBConfigErrors(t *testing.T) {
	for _, c := range []QUICLBConfig{
		{ConfigID: 7, ServerIDLen: 2, NonceLen: 4},
		{ServerIDLen: 0, NonceLen: 4},
		{ServerIDLen: 16, NonceLen: 4},
		{ServerIDLen: 2, NonceLen: 3},
		{ServerIDLen: 4, NonceLen: 16},
		{ServerIDLen: 2, NonceLen: 6, Key: make([]byte, 15)},
	} {
		if _, err := NewQUICLB(c); !errors.Is(err, ErrQUICLBConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	q, err := NewQUICLB(QUICLBConfig{ServerIDLen: 2, NonceLen: 6})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Encode(make([]byte, 20), []byte{1}, make([]byte, 6)); !errors.Is(err, ErrQUICLBConfig) {
		t.Errorf("short server ID: %v", err)
	}
}

func TestQUICDestConnID(t *testing.T) {
	long := append([]byte{0xc0, 0, 0, 0, 1, 8}, unhex(t, "0102030405060708")...)
	long = append(long, 0, 0, 0)
	for _, tc := range []struct {
		name     string
		b        []byte
		shortLen int
		ok, lng  bool
		off, n   int
	}{
		{"long", long, 5, true, true, 6, 8},
		{"long truncated", long[:13], 5, false, true, 0, 0},
		{"long cid too long", []byte{0xc0, 0, 0, 0, 1, 21}, 5, false, true, 0, 0},
		{"short", []byte{0x40, 1, 2, 3, 4, 5}, 5, true, false, 1, 5},
		{"short truncated", []byte{0x40, 1, 2, 3, 4}, 5, false, false, 0, 0},
		{"short without length", []byte{0x40, 1, 2, 3, 4}, 0, false, false, 0, 0},
		{"empty", nil, 5, false, false, 0, 0},
	} {
		h, ok := QUICDestConnID(tc.b, tc.shortLen)
		if ok != tc.ok || ok && (h.Long != tc.lng || h.DCIDOff != tc.off || h.DCIDLen != tc.n) {
			t.Errorf("%s: %+v %v", tc.name, h, ok)
		}
	}
	if h, _ := QUICDestConnID(long, 5); h.Version != 1 {
		t.Errorf("version %d", h.Version)
	}
}

// FuzzQUIC feeds arbitrary UDP payloads to the header parser and the decoder of both
// modes; nothing may panic, and whatever decodes must lie inside the payload.
func FuzzQUIC(f *testing.F) {
	f.Add(unhex(f, "c00000000108072cc4605e4504cc4f00"), 8)
	f.Add(unhex(f, "400720b1d07b359d3c0000"), 8)
	f.Add(unhex(f, "40504dd2d05a7b0de9b2b9907afb5ecf8cc3"), 17)
	f.Add([]byte{0xff}, 0)
	plain, _ := NewQUICLB(QUICLBConfig{ServerIDLen: 3, NonceLen: 4})
	enc4, _ := NewQUICLB(QUICLBConfig{ServerIDLen: 3, NonceLen: 4, Key: unhex(f, "8f95f09245765f80256934e50c66207f")})
	enc1, _ := NewQUICLB(QUICLBConfig{ConfigID: 2, ServerIDLen: 8, NonceLen: 8, Key: unhex(f, "8f95f09245765f80256934e50c66207f")})
	f.Fuzz(func(t *testing.T, b []byte, shortLen int) {
		h, ok := QUICDestConnID(b, shortLen)
		if !ok {
			return
		}
		if h.DCIDOff+h.DCIDLen > len(b) || h.DCIDLen > MaxQUICConnIDLen {
			t.Fatalf("dcid %d+%d outside %d bytes", h.DCIDOff, h.DCIDLen, len(b))
		}
		cid := b[h.DCIDOff : h.DCIDOff+h.DCIDLen]
		var sc QUICScratch
		for _, q := range []*QUICLB{plain, enc4, enc1} {
			if sid, ok := q.ServerID(cid, &sc); ok && len(sid) != q.ServerIDLen() {
				t.Fatalf("server ID of %d bytes", len(sid))
			}
		}
	})
}
