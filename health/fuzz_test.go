package health

import (
	"encoding/binary"
	"math"
	"net/http"
	"testing"
)

// FuzzMatchEchoReply feeds arbitrary ICMP messages to the reply matcher: it never panics, and
// a match always has the echo-reply type, the sequence number and the payload asked for.
func FuzzMatchEchoReply(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0x12, 0x34, 0, 7, 'a', 'b'}, false, uint16(0x1234), uint16(7), []byte("ab"))
	f.Add([]byte{129, 0, 0, 0, 0, 1, 0, 1}, true, uint16(1), uint16(1), []byte{})
	f.Add([]byte{}, false, uint16(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, b []byte, v6 bool, id, seq uint16, payload []byte) {
		if !matchEchoReply(b, v6, true, id, seq, payload) {
			return
		}
		want := byte(0)
		if v6 {
			want = 129
		}
		if b[0] != want || binary.BigEndian.Uint16(b[4:]) != id || binary.BigEndian.Uint16(b[6:]) != seq ||
			string(b[8:8+len(payload)]) != string(payload) {
			t.Fatalf("matched a message that is not the reply: % x", b)
		}
	})
}

// FuzzLoadHeader parses arbitrary X-Load values: a reported load is always finite and >= 0.
func FuzzLoadHeader(f *testing.F) {
	for _, s := range []string{"0.5", " 3 ", "-1", "NaN", "Inf", "1e400", "0x1p-2", "", "abc"} {
		f.Add(s)
	}
	c := &HTTP{}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set(DefaultLoadHeader, v)
		r := c.load(h)
		if r.HasLoad && (r.Load < 0 || math.IsNaN(r.Load) || math.IsInf(r.Load, 0)) {
			t.Fatalf("load %v from %q", r.Load, v)
		}
		if !r.HasLoad && r.Load != 0 {
			t.Fatalf("load %v without HasLoad", r.Load)
		}
	})
}
