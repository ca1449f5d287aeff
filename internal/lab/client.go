package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ClientOptions configures HTTPClient.
type ClientOptions struct {
	KeepAlive bool          // reuse connections (default: a new connection per request)
	Timeout   time.Duration // per-request timeout; 0 means 2s
	LocalAddr net.Addr      // optional source address (*net.TCPAddr)
}

// HTTPClient returns an HTTP client whose connections are dialled inside the namespace.
func (n *NS) HTTPClient(o ClientOptions) *http.Client {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	d := &net.Dialer{Timeout: o.Timeout, LocalAddr: o.LocalAddr}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n.DialWith(ctx, d, network, addr)
		},
		DisableKeepAlives:   !o.KeepAlive,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     10 * time.Second,
		Proxy:               nil,
	}
	return &http.Client{Transport: tr, Timeout: o.Timeout}
}

// Tally counts the outcome of a request loop.
type Tally struct {
	ByBackend map[string]int // successful answers per backend name
	OK        int
	Failed    int
	Errors    map[string]int // failure reasons (error text, or "status NNN") and counts
	Elapsed   time.Duration
}

// Total is OK + Failed.
func (t Tally) Total() int { return t.OK + t.Failed }

func (t Tally) String() string {
	return fmt.Sprintf("ok=%d failed=%d by-backend=%v errors=%v in %v", t.OK, t.Failed, t.ByBackend, t.Errors, t.Elapsed.Round(time.Millisecond))
}

// Get sends one GET and returns the backend name the answer carries (its trimmed body).
func Get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("request %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", &StatusError{Code: resp.StatusCode}
	}
	return strings.TrimSpace(string(body)), nil
}

// StatusError is a non-200 answer.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("status %d", e.Code) }

// Spread sends up to count GETs to url one after another, stopping early when max elapses
// or ctx ends, and counts the answers per backend name. It never sends more than count.
func Spread(ctx context.Context, c *http.Client, url string, count int, max time.Duration) Tally {
	t := Tally{ByBackend: map[string]int{}, Errors: map[string]int{}}
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	start := time.Now()
	for i := 0; i < count && ctx.Err() == nil; i++ {
		name, err := Get(ctx, c, url)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				break
			}
			t.Failed++
			t.Errors[reason(err)]++
			continue
		}
		t.OK++
		t.ByBackend[name]++
	}
	t.Elapsed = time.Since(start)
	return t
}

// SpreadParallel is Spread with workers concurrent request loops sharing the count.
func SpreadParallel(ctx context.Context, c *http.Client, url string, count, workers int, max time.Duration) Tally {
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	start := time.Now()
	results := make(chan Tally, workers)
	for w := range workers {
		share := count / workers
		if w < count%workers {
			share++
		}
		go func() { results <- Spread(ctx, c, url, share, max) }()
	}
	t := Tally{ByBackend: map[string]int{}, Errors: map[string]int{}}
	for range workers {
		r := <-results
		t.OK += r.OK
		t.Failed += r.Failed
		for k, v := range r.ByBackend {
			t.ByBackend[k] += v
		}
		for k, v := range r.Errors {
			t.Errors[k] += v
		}
	}
	t.Elapsed = time.Since(start)
	return t
}

// reason shortens an error to a stable key (the innermost message).
func reason(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}
