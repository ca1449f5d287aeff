package control

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/xlb-dev/xlb/dataplane"
)

func testStream(t testing.TB, recs []dataplane.CaptureRecord, sum CaptureSummary) []byte {
	var b bytes.Buffer
	sw := &streamWriter{w: bufio.NewWriter(&b), flush: func() error { return nil }}
	sw.header(captureHeader{Snaplen: 100, Interfaces: map[string]string{"2": "eth0"}})
	for i := range recs {
		sw.packet(&recs[i])
	}
	sw.stats(CaptureSummary{Records: 1})
	sw.stats(sum)
	if err := sw.flushNow(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pcapngComments returns the comment of every enhanced packet block of a pcapng file (""
// where there is none), read independently of the writer.
func pcapngComments(t *testing.T, b []byte) []string {
	var out []string
	for len(b) >= 12 {
		typ, n := binary.LittleEndian.Uint32(b[0:4]), int(binary.LittleEndian.Uint32(b[4:8]))
		if n < 12 || n > len(b) {
			t.Fatalf("block of %d bytes in %d", n, len(b))
		}
		if typ == 6 {
			caplen := int(binary.LittleEndian.Uint32(b[20:24]))
			opts := b[28+(caplen+3)&^3 : n-4]
			c := ""
			for len(opts) >= 4 {
				code, l := binary.LittleEndian.Uint16(opts[0:2]), int(binary.LittleEndian.Uint16(opts[2:4]))
				if code == 0 {
					break
				}
				if code == 1 {
					c = string(opts[4 : 4+l])
				}
				opts = opts[4+(l+3)&^3:]
			}
			out = append(out, c)
		}
		b = b[n:]
	}
	return out
}

// TestCaptureStreamToPcapng: records go through the stream and the pcapng writer and come
// back out of pcapgo's reader with their interface (direction), time, lengths and bytes; the
// drop reason is the packet's comment.
func TestCaptureStreamToPcapng(t *testing.T) {
	t0 := time.Unix(1700000000, 123456789)
	recs := []dataplane.CaptureRecord{
		{Time: t0, Dir: dataplane.CaptureReceived, Ifindex: 2, WireLen: 60, Data: bytes.Repeat([]byte{1}, 60)},
		{Time: t0, Dir: dataplane.CaptureSent, Ifindex: 2, WireLen: 80, Data: bytes.Repeat([]byte{2}, 61)},
		{Time: t0.Add(time.Microsecond), Dir: dataplane.CaptureReceived, Ifindex: 2, WireLen: 42, Data: bytes.Repeat([]byte{3}, 42)},
		{Time: t0.Add(time.Microsecond), Dir: dataplane.CaptureDropped, Ifindex: 2, WireLen: 42, Reason: "no_service", Data: bytes.Repeat([]byte{3}, 42)},
		{Time: t0.Add(time.Microsecond), Dir: dataplane.CaptureSent, Ifindex: -1, WireLen: 43, Reason: "to_kernel", Data: bytes.Repeat([]byte{4}, 43)},
	}
	stream := testStream(t, recs, CaptureSummary{Records: 5, Lost: 7, End: "count"})
	var file bytes.Buffer
	pw, err := NewPcapngWriter(&file)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	sum, err := ReadCaptureStream(bytes.NewReader(stream), func(p *CapturedPacket) error {
		names = append(names, p.Ifname)
		return pw.Write(p)
	})
	if err != nil || sum != (CaptureSummary{Records: 5, Lost: 7, End: "count"}) {
		t.Fatalf("stream: %+v, %v", sum, err)
	}
	if names[0] != "eth0" || names[4] != "" {
		t.Errorf("interface names %q", names)
	}
	if err := pw.WriteLost(t0, t0.Add(time.Second), sum); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(file.Bytes()), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range recs {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if ci.InterfaceIndex != int(want.Dir) || !ci.Timestamp.Equal(want.Time) || ci.Length != want.WireLen ||
			!bytes.Equal(data, want.Data) {
			t.Errorf("packet %d: %+v %x, want %+v", i, ci, data, want)
		}
	}
	if _, _, err := r.ReadPacketData(); !errors.Is(err, io.EOF) {
		t.Errorf("after the packets: %v, want EOF", err)
	}
	if r.NInterfaces() != 3 {
		t.Errorf("%d interfaces, want 3", r.NInterfaces())
	}
	for i, want := range []string{"xlb-received", "xlb-sent", "xlb-dropped"} {
		if in, err := r.Interface(i); err != nil || in.Name != want {
			t.Errorf("interface %d: %q %v, want %q", i, in.Name, err, want)
		}
	}
	got := pcapngComments(t, file.Bytes())
	if want := []string{"", "", "", "no_service", "to_kernel"}; len(got) != len(want) || got[3] != want[3] || got[4] != want[4] || got[0] != "" {
		t.Errorf("comments %q, want %q", got, want)
	}

	// A stream cut short is an error, not a clean end.
	if _, err := ReadCaptureStream(bytes.NewReader(stream[:len(stream)-3]), func(*CapturedPacket) error { return nil }); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated stream: %v", err)
	}
}

// FuzzReadCaptureStream: the client's stream decoder never panics and never hands out a frame
// longer than its wire length.
func FuzzReadCaptureStream(f *testing.F) {
	t0 := time.Unix(1700000000, 0)
	f.Add(testStream(f, []dataplane.CaptureRecord{
		{Time: t0, Dir: dataplane.CaptureDropped, Ifindex: 2, WireLen: 10, Reason: "no_backend", Data: make([]byte, 10)},
	}, CaptureSummary{Records: 1, End: "count"}))
	f.Add([]byte(captureMagic + "p\x00\x00\x00\x02ab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadCaptureStream(bytes.NewReader(b), func(p *CapturedPacket) error {
			if len(p.Data) > p.WireLen || p.Dir > dataplane.CaptureDropped {
				t.Fatalf("bad packet %+v", p)
			}
			return nil
		})
	})
}
