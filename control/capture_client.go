package control

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xlb-dev/xlb/dataplane"
)

// ErrCaptureStream is wrapped by errors in a capture stream that does not parse.
var ErrCaptureStream = errors.New("bad capture stream")

// CapturedPacket is one frame of a capture stream. Data is valid until the callback that
// receives it returns.
type CapturedPacket struct {
	Time    time.Time
	Dir     dataplane.CaptureDir
	Ifindex int    // -1: handed to the kernel
	Ifname  string // the interface's name, when the server knew it
	Reason  string // why it was dropped, "to_kernel", or ""
	WireLen int
	Data    []byte
}

// Capture runs a capture on the server and calls fn for every frame it streams, until the
// capture ends (count, duration), ctx is done (the server then stops the capture too) or fn
// fails. It returns the server's last counts: Lost says how many records did not fit in the
// workers' rings.
func (c *Client) Capture(ctx context.Context, req CaptureRequest, fn func(*CapturedPacket) error) (CaptureSummary, error) {
	u := c.baseURL() + APIPrefix + "/capture"
	if q := req.query().Encode(); q != "" {
		u += "?" + q
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return CaptureSummary{}, fmt.Errorf("api request: %w", err)
	}
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := &http.Client{Transport: c.transport()} // no timeout: the stream lasts as long as the capture
	resp, err := hc.Do(hr)
	if err != nil {
		return CaptureSummary{}, fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return CaptureSummary{}, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	sum, err := readCaptureStream(resp.Body, req.Started, fn)
	if err != nil && ctx.Err() != nil {
		return sum, nil // the caller stopped it
	}
	return sum, err
}

// ReadCaptureStream decodes a capture stream (as GET /api/v1/capture sends it), calling fn
// for every frame, and returns the last counts it carried. A stream that ends without its
// final counts is reported with io.ErrUnexpectedEOF.
func ReadCaptureStream(r io.Reader, fn func(*CapturedPacket) error) (CaptureSummary, error) {
	return readCaptureStream(r, nil, fn)
}

func readCaptureStream(r io.Reader, started func(map[int]string), fn func(*CapturedPacket) error) (CaptureSummary, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var sum CaptureSummary
	magic := make([]byte, len(captureMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != captureMagic {
		return sum, fmt.Errorf("%w: no capture stream header", ErrCaptureStream)
	}
	names := map[int]string{}
	buf := make([]byte, 0, 4096)
	var pkt CapturedPacket
	for {
		var h [5]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return sum, fmt.Errorf("capture stream: %w", err)
		}
		n := binary.BigEndian.Uint32(h[1:])
		if n > maxStreamMsg {
			return sum, fmt.Errorf("%w: message of %d bytes", ErrCaptureStream, n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return sum, fmt.Errorf("capture stream: %w", io.ErrUnexpectedEOF)
		}
		switch h[0] {
		case 'h':
			var hdr captureHeader
			if err := json.Unmarshal(buf, &hdr); err != nil {
				return sum, fmt.Errorf("%w: header: %w", ErrCaptureStream, err)
			}
			for k, v := range hdr.Interfaces {
				if i, err := strconv.Atoi(k); err == nil {
					names[i] = v
				}
			}
			if started != nil {
				started(names)
			}
		case 's':
			if err := json.Unmarshal(buf, &sum); err != nil {
				return sum, fmt.Errorf("%w: counts: %w", ErrCaptureStream, err)
			}
			if sum.End != "" {
				return sum, nil
			}
		case 'p':
			if err := decodePacket(buf, &pkt); err != nil {
				return sum, err
			}
			pkt.Ifname = names[pkt.Ifindex]
			if err := fn(&pkt); err != nil {
				return sum, err
			}
		default:
			return sum, fmt.Errorf("%w: message kind %q", ErrCaptureStream, h[0])
		}
	}
}

func decodePacket(b []byte, p *CapturedPacket) error {
	if len(b) < pktFixed || len(b) < pktFixed+int(b[17]) {
		return fmt.Errorf("%w: short frame message", ErrCaptureStream)
	}
	rl := int(b[17])
	*p = CapturedPacket{
		Time:    time.Unix(0, int64(binary.BigEndian.Uint64(b[0:8]))),
		Ifindex: int(int32(binary.BigEndian.Uint32(b[8:12]))),
		WireLen: int(binary.BigEndian.Uint32(b[12:16])),
		Dir:     dataplane.CaptureDir(b[16]),
		Reason:  string(b[pktFixed : pktFixed+rl]),
		Data:    b[pktFixed+rl:],
	}
	if p.Dir > dataplane.CaptureDropped || p.WireLen < len(p.Data) {
		return fmt.Errorf("%w: frame message (direction %d, %d of %d bytes)", ErrCaptureStream, p.Dir, len(p.Data), p.WireLen)
	}
	return nil
}

// PcapngWriter writes captured frames as pcapng (gopacket's pcapgo) with one interface per
// direction: "xlb-received", "xlb-sent" and "xlb-dropped" (Ethernet), in that order. A
// dropped frame carries its reason as the packet's comment, as does a frame handed to the
// kernel ("to_kernel").
type PcapngWriter struct {
	w   io.Writer
	ng  *pcapgo.NgWriter
	epb []byte
}

var pcapngIfaces = [...]string{"xlb-received", "xlb-sent", "xlb-dropped"}

// NewPcapngWriter writes the section header and the three interfaces to w.
func NewPcapngWriter(w io.Writer) (*PcapngWriter, error) {
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = "xlb ctl capture"
	descr := [...]string{"frames as the xlb workers received them", "frames as the xlb workers sent them",
		"frames the xlb workers dropped (the reason is the packet comment)"}
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: pcapngIfaces[0], Description: descr[0],
		LinkType: layers.LinkTypeEthernet}, opts)
	if err != nil {
		return nil, fmt.Errorf("pcapng: %w", err)
	}
	for i := 1; i < len(pcapngIfaces); i++ {
		if _, err := ng.AddInterface(pcapgo.NgInterface{Name: pcapngIfaces[i], Description: descr[i],
			LinkType: layers.LinkTypeEthernet}); err != nil {
			return nil, fmt.Errorf("pcapng: %w", err)
		}
	}
	return &PcapngWriter{w: w, ng: ng}, nil
}

// Write adds a frame.
func (pw *PcapngWriter) Write(p *CapturedPacket) error {
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.WireLen,
		InterfaceIndex: int(p.Dir)}
	if p.Reason == "" {
		return pw.ng.WritePacket(ci, p.Data)
	}
	// pcapgo writes no packet options: write this enhanced packet block (RFC draft
	// "PCAP Next Generation", section 4.3) with its opt_comment after what pcapgo buffered.
	if err := pw.ng.Flush(); err != nil {
		return err
	}
	_, err := pw.w.Write(pw.commented(ci, p.Data, p.Reason))
	return err
}

func pad4(n int) int { return (n + 3) &^ 3 }

// commented builds an enhanced packet block with an opt_comment.
func (pw *PcapngWriter) commented(ci gopacket.CaptureInfo, data []byte, comment string) []byte {
	total := 28 + pad4(len(data)) + 4 + pad4(len(comment)) + 4 + 4
	b := append(pw.epb[:0], make([]byte, total)...)
	le := binary.LittleEndian
	ts := uint64(ci.Timestamp.UnixNano())
	le.PutUint32(b[0:], 6) // enhanced packet block
	le.PutUint32(b[4:], uint32(total))
	le.PutUint32(b[8:], uint32(ci.InterfaceIndex))
	le.PutUint32(b[12:], uint32(ts>>32))
	le.PutUint32(b[16:], uint32(ts))
	le.PutUint32(b[20:], uint32(len(data)))
	le.PutUint32(b[24:], uint32(ci.Length))
	copy(b[28:], data)
	o := 28 + pad4(len(data))
	le.PutUint16(b[o:], 1) // opt_comment
	le.PutUint16(b[o+2:], uint16(len(comment)))
	copy(b[o+4:], comment)
	o += 4 + pad4(len(comment))
	o += 4 // opt_endofopt: zeros
	le.PutUint32(b[o:], uint32(total))
	pw.epb = b
	return b
}

// WriteLost records the frames that did not fit in the rings as the received interface's
// dropped count (an interface statistics block), and flushes.
func (pw *PcapngWriter) WriteLost(start, end time.Time, sum CaptureSummary) error {
	st := pcapgo.NgInterfaceStatistics{LastUpdate: end, StartTime: start, EndTime: end,
		PacketsReceived: pcapgo.NgNoValue64, PacketsDropped: sum.Lost,
		Comment: fmt.Sprintf("xlb: %d records written, %d did not fit in the workers' rings; ended by %s", sum.Records, sum.Lost, sum.End)}
	if err := pw.ng.WriteInterfaceStats(0, st); err != nil {
		return err
	}
	return pw.Flush()
}

// Flush writes out what is buffered.
func (pw *PcapngWriter) Flush() error { return pw.ng.Flush() }
