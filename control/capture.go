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
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// CaptureSource arms packet captures in the data path. *dataplane.Dataplane is one.
type CaptureSource interface {
	StartCapture(dataplane.CaptureOptions) (*dataplane.Capture, error)
	Interfaces() []dataplane.InterfaceInfo
}

// CaptureRequest is what `xlb ctl capture` asks for (GET /api/v1/capture, as query
// parameters of the same names).
type CaptureRequest struct {
	Service  string        // service name
	Backend  string        // backend name, ID or address
	Client   string        // client address or prefix
	Count    int           // stop after this many records (0: no limit)
	Duration time.Duration // stop after this long (0: no limit)
	Snaplen  int           // bytes kept per frame (0: whole frames)
	Ring     int           // records per worker ring (0: the data path's default)
	// Started, when set, is called once the server has armed the capture, with the
	// data path's interfaces by index (Client.Capture only).
	Started func(ifaces map[int]string) `json:"-"`
}

func (q CaptureRequest) query() url.Values {
	v := url.Values{}
	add := func(k, s string) {
		if s != "" && s != "0" && s != "0s" {
			v.Set(k, s)
		}
	}
	add("service", q.Service)
	add("backend", q.Backend)
	add("client", q.Client)
	add("count", strconv.Itoa(q.Count))
	add("duration", q.Duration.String())
	add("snaplen", strconv.Itoa(q.Snaplen))
	add("ring", strconv.Itoa(q.Ring))
	return v
}

// parseCaptureRequest reads a CaptureRequest from an API query and builds the data path's
// options from it.
func parseCaptureRequest(r *http.Request) (CaptureRequest, dataplane.CaptureOptions, error) {
	q := r.URL.Query()
	req := CaptureRequest{Service: q.Get("service"), Backend: q.Get("backend"), Client: q.Get("client")}
	opts := dataplane.CaptureOptions{Filter: dataplane.CaptureFilter{Service: req.Service, Backend: req.Backend}}
	if req.Client != "" {
		p, err := parsePrefixOrAddr(req.Client)
		if err != nil {
			return req, opts, fmt.Errorf("%w: client %q: want an address or a prefix", config.ErrValue, req.Client)
		}
		opts.Filter.Client = p
	}
	ints := []struct {
		name string
		dst  *int
	}{{"count", &req.Count}, {"snaplen", &req.Snaplen}, {"ring", &req.Ring}}
	for _, n := range ints {
		if s := q.Get(n.name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				return req, opts, fmt.Errorf("%w: %s %q", config.ErrValue, n.name, s)
			}
			*n.dst = v
		}
	}
	if s := q.Get("duration"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return req, opts, fmt.Errorf("%w: duration %q", config.ErrValue, s)
		}
		req.Duration = d
	}
	opts.Snaplen, opts.Ring = req.Snaplen, req.Ring
	return req, opts, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// capturePoll is how often the API takes records off the workers' rings.
const capturePoll = 2 * time.Millisecond

// captureStatsEvery is how often the stream carries the running counts.
const captureStatsEvery = time.Second

// serveCapture is GET /api/v1/capture: it arms a capture and streams its records (see
// capture_stream.go) until the count or the duration is reached or the client goes away.
func serveCapture(src CaptureSource, w http.ResponseWriter, r *http.Request) {
	if src == nil {
		writeErr(w, fmt.Errorf("%w: no data path to capture from", ErrNotFound))
		return
	}
	req, opts, err := parseCaptureRequest(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	c, err := src.StartCapture(opts)
	switch {
	case errors.Is(err, dataplane.ErrCaptureBusy):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	case errors.Is(err, dataplane.ErrCaptureFilter):
		writeErr(w, fmt.Errorf("%w: %w", config.ErrValue, err))
		return
	case err != nil:
		writeErr(w, err)
		return
	}
	defer c.Close()
	w.Header().Set("Content-Type", captureContentType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	sw := &streamWriter{w: bufio.NewWriterSize(w, 64<<10), flush: func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return rc.Flush()
	}}
	hdr := captureHeader{Snaplen: opts.Snaplen, Interfaces: map[string]string{}}
	for _, in := range src.Interfaces() {
		hdr.Interfaces[strconv.Itoa(in.Index)] = in.Name
	}
	sw.header(hdr)
	end := streamCapture(r.Context(), c, sw, req)
	c.Close()
	if end != "client" { // the rest of what the workers wrote before the disarm
		drainCapture(c, sw, req.Count)
	}
	st := c.Stats()
	sw.stats(CaptureSummary{Records: sw.records, Lost: st.Lost, End: end})
	_ = sw.flushNow()
}

// streamCapture sends records until the capture ends and returns why it ended.
func streamCapture(ctx context.Context, c *dataplane.Capture, sw *streamWriter, req CaptureRequest) string {
	var deadline <-chan time.Time
	if req.Duration > 0 {
		t := time.NewTimer(req.Duration)
		defer t.Stop()
		deadline = t.C
	}
	poll := time.NewTicker(capturePoll)
	defer poll.Stop()
	lastStats := time.Now()
	for {
		select {
		case <-ctx.Done():
			return "client"
		case <-deadline:
			return "duration"
		case <-poll.C:
		}
		drainCapture(c, sw, req.Count)
		if sw.err != nil {
			return "client"
		}
		if req.Count > 0 && sw.records >= uint64(req.Count) {
			return "count"
		}
		if time.Since(lastStats) >= captureStatsEvery {
			lastStats = time.Now()
			sw.stats(CaptureSummary{Records: sw.records, Lost: c.Stats().Lost})
		}
		if sw.pending {
			_ = sw.flushNow()
		}
	}
}

// drainCapture sends what the rings hold, at most up to count records in all (0: no limit).
func drainCapture(c *dataplane.Capture, sw *streamWriter, count int) {
	c.Read(func(rec *dataplane.CaptureRecord) {
		if count > 0 && sw.records >= uint64(count) {
			return
		}
		sw.packet(rec)
	})
}

// The capture stream: a magic line, then messages of a kind byte, a big-endian 32-bit
// payload length and the payload. 'h': the header (JSON captureHeader), once; 'p': a frame
// (binary, see streamWriter.packet); 's': the counts so far (JSON CaptureSummary), about
// once a second and last, with End set.
const (
	captureMagic       = "XLBCAP1\n"
	captureContentType = "application/vnd.xlb.capture"
	maxStreamMsg       = 1 << 20
	pktFixed           = 8 + 4 + 4 + 1 + 1 // time, ifindex, wire length, direction, reason length
)

type captureHeader struct {
	Snaplen    int               `json:"snaplen"`
	Interfaces map[string]string `json:"interfaces"` // ifindex -> name
}

// CaptureSummary is how a capture went: the records sent, those lost because a worker's ring
// was full, and why it ended (count, duration, client; "" while it runs).
type CaptureSummary struct {
	Records uint64 `json:"records"`
	Lost    uint64 `json:"lost"`
	End     string `json:"end,omitempty"`
}

type streamWriter struct {
	w       *bufio.Writer
	flush   func() error
	buf     [5 + pktFixed + 255]byte
	records uint64
	pending bool
	err     error
}

func (s *streamWriter) msg(kind byte, payload ...[]byte) {
	if s.err != nil {
		return
	}
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(n))
	_, s.err = s.w.Write(h[:])
	for _, p := range payload {
		if s.err == nil {
			_, s.err = s.w.Write(p)
		}
	}
	s.pending = true
}

func (s *streamWriter) header(h captureHeader) {
	if _, err := io.WriteString(s.w, captureMagic); err != nil {
		s.err = err
	}
	b, _ := json.Marshal(h)
	s.msg('h', b)
	_ = s.flushNow()
}

func (s *streamWriter) stats(st CaptureSummary) {
	b, _ := json.Marshal(st)
	s.msg('s', b)
}

func (s *streamWriter) packet(r *dataplane.CaptureRecord) {
	b := s.buf[:pktFixed]
	binary.BigEndian.PutUint64(b[0:8], uint64(r.Time.UnixNano()))
	binary.BigEndian.PutUint32(b[8:12], uint32(int32(r.Ifindex)))
	binary.BigEndian.PutUint32(b[12:16], uint32(r.WireLen))
	b[16] = uint8(r.Dir)
	reason := r.Reason[:min(len(r.Reason), 255)]
	b[17] = uint8(len(reason))
	b = append(b, reason...)
	s.msg('p', b, r.Data)
	s.records++
}

func (s *streamWriter) flushNow() error {
	if s.err == nil {
		s.err = s.w.Flush()
	}
	if s.err == nil {
		s.err = s.flush()
	}
	s.pending = false
	return s.err
}
