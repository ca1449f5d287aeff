package connsync

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func v4(a, b, c, d byte) [16]byte { return [16]byte{a, b, c, d} }

func testRecord(i int) Record {
	return Record{Key: sched.Key{Src: v4(198, 18, byte(i>>8), byte(i)), Dst: v4(198, 19, 0, 10),
		SrcPort: uint16(1024 + i), DstPort: 80, Proto: 6},
		Backend: v4(198, 18, 1, byte(i%3)), BackendPort: 80, State: sched.ConnEstablished}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s, err := NewSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{testRecord(1), testRecord(2), {Key: sched.Key{Src: [16]byte{0x20, 1, 0xd, 0xb8, 15: 1},
		Dst: [16]byte{0x20, 1, 0xd, 0xb8, 15: 2}, SrcPort: 5, DstPort: 53, Proto: 17, V6: true},
		Backend: [16]byte{0x20, 1, 15: 9}, BackendV6: true, State: sched.ConnUDP}}
	h := Header{Sender: 7, Seq: 42, Sent: 1e18, Oldest: 1e18 - 5}
	buf := make([]byte, Size(len(recs)))
	msg := s.Seal(buf, &h, recs)
	if len(msg) != Size(3) {
		t.Fatalf("message %d bytes, want %d", len(msg), Size(3))
	}
	var got Header
	raw, err := s.Open(msg, 1500, &got)
	if err != nil {
		t.Fatal(err)
	}
	h.Count = 3
	if got != h {
		t.Fatalf("header %+v, want %+v", got, h)
	}
	for i := range recs {
		var r Record
		if err := ParseRecord(raw, i, &r); err != nil {
			t.Fatal(err)
		}
		if r != recs[i] {
			t.Errorf("record %d: %+v, want %+v", i, r, recs[i])
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	s, _ := NewSealer(testKey)
	other, _ := NewSealer([]byte("another key, also 32 bytes long!"))
	good := s.Seal(make([]byte, Size(2)), &Header{Seq: 1}, []Record{testRecord(1), testRecord(2)})
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	cases := []struct {
		name string
		msg  []byte
		max  int
		want error
	}{
		{"short", good[:20], 1500, ErrShort},
		{"magic", flip(0), 1500, ErrMagic},
		{"version", flip(4), 1500, ErrVersion},
		{"flags", flip(5), 1500, ErrVersion},
		{"count", flip(7), 1500, ErrLength},
		{"truncated", good[:len(good)-1], 1500, ErrLength},
		{"oversized", good, len(good) - 1, ErrOversized},
		{"sender", flip(9), 1500, ErrAuth},
		{"seq", flip(23), 1500, ErrAuth},
		{"record", flip(HeaderSize + 3), 1500, ErrAuth},
		{"mac", flip(len(good) - 1), 1500, ErrAuth},
		{"wrong key", other.Seal(make([]byte, Size(1)), &Header{Seq: 1}, []Record{testRecord(1)}), 1500, ErrAuth},
	}
	for _, c := range cases {
		var h Header
		if _, err := s.Open(c.msg, c.max, &h); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestParseRecordRefuses(t *testing.T) {
	good := make([]byte, RecordSize)
	r := testRecord(1)
	putRecord(good, &r)
	for _, c := range []struct {
		name string
		at   int
		v    byte
	}{{"flags", 37, 4}, {"state", 38, byte(sched.NumConnStates)}, {"pad60", 60, 1},
		{"v4 tail src", 10, 1}, {"v4 tail dst", 30, 1}, {"v4 tail backend", 50, 1}} {
		b := bytes.Clone(good)
		b[c.at] = c.v
		if err := ParseRecord(b, 0, &r); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: %v, want ErrRecord", c.name, err)
		}
	}
	if err := ParseRecord(good, 1, &r); !errors.Is(err, ErrRecord) {
		t.Errorf("out of range: %v", err)
	}
	// A template names a client prefix: state and source port 0.
	tpl := bytes.Clone(good)
	tpl[39], tpl[38], tpl[32], tpl[33] = byte(KindTemplate), 0, 0, 0
	if err := ParseRecord(tpl, 0, &r); err != nil || r.Kind != KindTemplate {
		t.Fatalf("template: %v %+v", err, r)
	}
	for _, at := range []int{32, 33, 38} {
		b := bytes.Clone(tpl)
		b[at] = 1
		if err := ParseRecord(b, 0, &r); !errors.Is(err, ErrRecord) {
			t.Errorf("template with byte %d set: %v, want ErrRecord", at, err)
		}
	}
	// An unknown kind is its own error (the receiver skips the record, not the message);
	// a malformed record of an unknown kind is malformed.
	unknown := bytes.Clone(good)
	unknown[39] = byte(NumKinds)
	if err := ParseRecord(unknown, 0, &r); !errors.Is(err, ErrKind) {
		t.Errorf("unknown kind: %v, want ErrKind", err)
	}
	unknown[60] = 1
	if err := ParseRecord(unknown, 0, &r); !errors.Is(err, ErrRecord) {
		t.Errorf("unknown kind, bad padding: %v, want ErrRecord", err)
	}
}

func TestNewSealerShortKey(t *testing.T) {
	if _, err := NewSealer(make([]byte, MinKeySize-1)); !errors.Is(err, ErrKey) {
		t.Fatalf("%v, want ErrKey", err)
	}
}

func TestSealOpenAllocs(t *testing.T) {
	s, _ := NewSealer(testKey)
	recs := make([]Record, 21)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	buf := make([]byte, Size(len(recs)))
	var h Header
	var r Record
	if n := testing.AllocsPerRun(100, func() {
		msg := s.Seal(buf, &Header{Seq: 1}, recs)
		raw, err := s.Open(msg, 1500, &h)
		if err != nil || ParseRecord(raw, 20, &r) != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per seal+open, want 0", n)
	}
}

func TestReplayGuard(t *testing.T) {
	var g replayGuard
	seen := map[uint64]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	top := uint64(0)
	for range 20000 {
		seq := top + 1
		if top > 100 && rng.IntN(3) == 0 {
			seq = top - uint64(rng.IntN(100)) // out of order or replayed
		}
		ok, _ := g.check(9, seq)
		want := !seen[seq] && seq+windowBits > top
		if top < seq {
			want = true
		}
		if ok != want {
			t.Fatalf("seq %d (top %d, seen %v): ok %v, want %v", seq, top, seen[seq], ok, want)
		}
		if ok {
			seen[seq] = true
			top = max(top, seq)
		}
	}
	if ok, _ := g.check(10, 5); !ok {
		t.Fatal("a new sender's first message refused")
	}
	if ok, gap := g.check(10, 9); !ok || gap != 3 {
		t.Fatalf("gap: ok %v gap %d, want true 3", ok, gap)
	}
}

func TestReplayGuardBounded(t *testing.T) {
	var g replayGuard
	for s := range uint64(10 * maxSenders) {
		g.check(s, 1)
	}
	if len(g.w) != maxSenders {
		t.Fatalf("%d senders remembered, want %d", len(g.w), maxSenders)
	}
	if ok, _ := g.check(10*maxSenders-1, 1); ok {
		t.Fatal("a recent sender's replay accepted")
	}
}

func FuzzOpen(f *testing.F) {
	s, _ := NewSealer(testKey)
	f.Add(s.Seal(make([]byte, Size(2)), &Header{Seq: 1}, []Record{testRecord(1), testRecord(2)}))
	rm := testRecord(3)
	rm.Kind = KindRemove
	f.Add(s.Seal(make([]byte, Size(3)), &Header{Seq: 2}, []Record{testRecord(1), rm, testTemplate()}))
	f.Add([]byte("XLBS\x01\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		raw, err := s.Open(b, 1<<16, &h)
		if err != nil {
			// A frame that passes every check but the MAC: sign it and it must open.
			if errors.Is(err, ErrAuth) {
				n := int(b[6])<<8 | int(b[7])
				if _, err := s.Open(s.resign(b), 1<<16, &h); err != nil || h.Count != n {
					t.Fatalf("re-signed message: %v (count %d, want %d)", err, h.Count, n)
				}
			}
			return
		}
		if len(raw) != h.Count*RecordSize {
			t.Fatalf("records %d bytes for count %d", len(raw), h.Count)
		}
		for i := range h.Count {
			var r Record
			if ParseRecord(raw, i, &r) != nil {
				continue
			}
			// A record that parses encodes back to the same bytes.
			out := make([]byte, RecordSize)
			putRecord(out, &r)
			if !bytes.Equal(out, raw[i*RecordSize:(i+1)*RecordSize]) {
				t.Fatalf("record %d does not round-trip", i)
			}
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	good := make([]byte, RecordSize)
	r := testRecord(3)
	putRecord(good, &r)
	f.Add(good)
	tpl := make([]byte, RecordSize)
	r = testTemplate()
	putRecord(tpl, &r)
	f.Add(tpl)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if ParseRecord(b, 0, &r) != nil {
			return
		}
		out := make([]byte, RecordSize)
		putRecord(out, &r)
		if !bytes.Equal(out, b[:RecordSize]) {
			t.Fatalf("record does not round-trip: %x -> %x", b[:RecordSize], out)
		}
	})
}

// BenchmarkSeal is the sender's cost per full default-size message (21 records), without
// the send.
func BenchmarkSeal(b *testing.B) {
	s, _ := NewSealer(testKey)
	recs := make([]Record, (DefaultMaxMessage-Size(0))/RecordSize)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	buf := make([]byte, Size(len(recs)))
	h := Header{Seq: 1}
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		s.Seal(buf, &h, recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// BenchmarkOpenApply is the receiver's cost per full default-size message: open, parse,
// replay check and table writes.
func BenchmarkOpenApply(b *testing.B) {
	n, _ := New(Config{Key: testKey}) // the default capacity
	s, _ := NewSealer(testKey)
	recs := make([]Record, (DefaultMaxMessage-Size(0))/RecordSize)
	buf := make([]byte, Size(len(recs)))
	scratch := make([]Record, MaxRecords)
	var g replayGuard
	h := Header{Sender: 3}
	apply := func() {
		h.Seq++
		for i := range recs {
			recs[i] = testRecord(int(h.Seq)*len(recs) + i)
		}
		h.Sent = time.Now().UnixNano()
		if d := n.apply(s, &g, s.Seal(buf, &h, recs), scratch, time.Now()); d != -1 {
			b.Fatal(DropName(d))
		}
	}
	for range 2 * DefaultCapacity / len(recs) { // a full table, its pages faulted in
		apply()
	}
	b.ReportAllocs()
	for b.Loop() {
		apply()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
