package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// The control connection: a generator asks a sink, over TCP, for its counts. One JSON
// object per line each way: the request {"op":"counts"}, the answer a SinkCounts (or
// {"error":"..."}).

// ErrControl is wrapped by errors of the control connection.
var ErrControl = errors.New("bench: sink control")

type controlRequest struct {
	Op string `json:"op"`
}

type controlReply struct {
	SinkCounts
	Error string `json:"error,omitempty"`
}

// maxControlLine bounds a request line.
const maxControlLine = 4096

// ServeControl answers generators on l with counts() until ctx ends or l fails; it closes l
// when it returns.
func ServeControl(ctx context.Context, l net.Listener, counts func() SinkCounts) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: accept: %w", ErrControl, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := context.AfterFunc(ctx, func() { c.Close() })
			defer done()
			serveConn(c, counts)
		}()
	}
}

// serveConn answers one connection's requests until it closes or sends something
// unreadable.
func serveConn(c net.Conn, counts func() SinkCounts) {
	defer c.Close()
	r := bufio.NewScanner(c)
	r.Buffer(make([]byte, 0, 512), maxControlLine)
	enc := json.NewEncoder(c)
	for r.Scan() {
		var rep controlReply
		op, err := parseRequest(r.Bytes())
		switch {
		case err != nil:
			rep.Error = err.Error()
		case op == "counts":
			rep.SinkCounts = counts()
		}
		if enc.Encode(rep) != nil || err != nil {
			return
		}
	}
}

// parseRequest reads one request line and returns its operation.
func parseRequest(line []byte) (string, error) {
	var req controlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return "", fmt.Errorf("%w: bad request: %w", ErrControl, err)
	}
	if req.Op != "counts" {
		return "", fmt.Errorf("%w: unknown op %q (want counts)", ErrControl, req.Op)
	}
	return req.Op, nil
}

// SinkClient is a generator's end of the control connection. Not safe for concurrent use.
type SinkClient struct {
	c   net.Conn
	r   *bufio.Reader
	enc *json.Encoder
}

// DialSink connects to a sink's control address (host:port).
func DialSink(ctx context.Context, addr string) (*SinkClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrControl, err)
	}
	return &SinkClient{c: c, r: bufio.NewReader(c), enc: json.NewEncoder(c)}, nil
}

// Counts asks the sink for its counts.
func (s *SinkClient) Counts() (SinkCounts, error) {
	_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := s.enc.Encode(controlRequest{Op: "counts"}); err != nil {
		return SinkCounts{}, fmt.Errorf("%w: send: %w", ErrControl, err)
	}
	line, err := s.r.ReadBytes('\n')
	if err != nil {
		return SinkCounts{}, fmt.Errorf("%w: read: %w", ErrControl, err)
	}
	var rep controlReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return SinkCounts{}, fmt.Errorf("%w: bad reply: %w", ErrControl, err)
	}
	if rep.Error != "" {
		return SinkCounts{}, fmt.Errorf("%w: sink says: %s", ErrControl, rep.Error)
	}
	return rep.SinkCounts, nil
}

// Close closes the connection.
func (s *SinkClient) Close() error { return s.c.Close() }
