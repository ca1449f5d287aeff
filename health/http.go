package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultMaxBody is how much of a response body an HTTP check reads when MaxBody is 0.
const DefaultMaxBody = 64 << 10

// DefaultLoadHeader is the response header an HTTP check reads a load figure from.
const DefaultLoadHeader = "X-Load"

// HTTP checks a backend with one GET request over a fresh connection (plain or TLS); it never
// reuses a connection between probes and reads at most MaxBody bytes of the body.
type HTTP struct {
	// Target is the address and port to connect to (backend address, or the VIP with a
	// steering Dialer).
	Target netip.AddrPort
	// TLS makes this an HTTPS check.
	TLS bool
	// Path is the request path and query; "" means "/". It must start with "/".
	Path string
	// Host is the Host header (and the TLS server name); "" means Target's address.
	Host string
	// ExpectStatus is the status code that counts as healthy; 0 means 200.
	ExpectStatus int
	// ExpectBody, when set, must occur in the first MaxBody bytes of the body.
	ExpectBody string
	// MaxBody bounds the bytes of body read; 0 means DefaultMaxBody.
	MaxBody int64
	// LoadHeader names the response header holding a load figure (a non-negative float);
	// "" means DefaultLoadHeader, "-" disables it.
	LoadHeader string
	// InsecureSkipVerify turns TLS certificate verification off (backends often use
	// self-signed certificates). Otherwise the certificate is checked against RootCAs.
	InsecureSkipVerify bool
	// RootCAs verifies the backend's certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check sends one GET and checks the status code and, optionally, the body.
func (c *HTTP) Check(ctx context.Context) (Report, error) {
	if err := c.validate(); err != nil {
		return Report{}, err
	}
	conn, err := c.Dialer.dialTCP(ctx, c.Target)
	if err != nil {
		return Report{}, timeoutErr(ctx, "http connect", err)
	}
	defer conn.Close()
	defer deadline(ctx, conn)()
	if c.TLS {
		tc := tls.Client(conn, c.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return Report{}, timeoutErr(ctx, "tls handshake", err)
		}
		conn = tc
	}
	return c.exchange(ctx, conn)
}

// validate checks the fields a probe needs.
func (c *HTTP) validate() error {
	if !c.Target.IsValid() || c.Target.Port() == 0 || (c.Path != "" && !strings.HasPrefix(c.Path, "/")) {
		return fmt.Errorf("%s: %w: needs an address, a port and a path starting with /", c, ErrConfig)
	}
	return nil
}

// exchange sends the GET over conn (plain or already TLS) and checks the response.
func (c *HTTP) exchange(ctx context.Context, conn net.Conn) (Report, error) {
	path := c.Path
	if path == "" {
		path = "/"
	}
	scheme := "http"
	if c.TLS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+c.Target.String()+path, nil)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w: %w", c, ErrConfig, err)
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	req.Close = true // "Connection: close": one request per connection
	req.Header.Set("User-Agent", "xlb-health/1")
	if err := req.Write(conn); err != nil {
		return Report{}, timeoutErr(ctx, "http write", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return Report{}, timeoutErr(ctx, "http read", err)
	}
	defer resp.Body.Close()
	limit := c.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	want := c.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return Report{}, fmt.Errorf("%w: got %d, want %d", ErrStatus, resp.StatusCode, want)
	}
	if c.ExpectBody != "" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
		if err != nil {
			return Report{}, timeoutErr(ctx, "http body", err)
		}
		if !strings.Contains(string(body), c.ExpectBody) {
			return Report{}, fmt.Errorf("%w: %q not in the first %d bytes", ErrBody, c.ExpectBody, len(body))
		}
	} else {
		// Read (a bounded part of) the body anyway: closing with unread data would reset
		// the connection, which backends log as an error. A read error here is no failure.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, limit))
	}
	return c.load(resp.Header), nil
}

// load parses the load header, if any.
func (c *HTTP) load(h http.Header) Report {
	name := c.LoadHeader
	if name == "-" {
		return Report{}
	}
	if name == "" {
		name = DefaultLoadHeader
	}
	v := h.Get(name)
	if v == "" {
		return Report{}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return Report{}
	}
	return Report{Load: f, HasLoad: true}
}

// tlsConfig builds the client TLS config of one probe (no session reuse between probes).
func (c *HTTP) tlsConfig() *tls.Config {
	name := c.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	if name == "" {
		name = c.Target.Addr().String()
	}
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: c.InsecureSkipVerify,
		RootCAs:            c.RootCAs,
		MinVersion:         tls.VersionTLS12,
	}
}

// String returns "http ADDR:PORT/path" or "https ...".
func (c *HTTP) String() string {
	s := "http "
	if c.TLS {
		s = "https "
	}
	p := c.Path
	if p == "" {
		p = "/"
	}
	return s + c.Target.String() + p
}
