package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTPConn is one long-lived HTTP/1.1 (keep-alive) connection, e.g. to a VIP:
// every Get sends "GET /" on the same TCP connection and returns the name of
// the backend that answered, so a test can tell whether a connection survived
// an event and stayed on its backend. Not safe for concurrent use.
type HTTPConn struct {
	net.Conn
	r *bufio.Reader
}

// NewHTTPConn wraps an established connection (dialled inside a namespace,
// e.g. with NS.Dial).
func NewHTTPConn(c net.Conn) *HTTPConn {
	return &HTTPConn{Conn: c, r: bufio.NewReader(c)}
}

// Get sends one request and returns the answering backend's name; it fails
// when the whole exchange takes longer than timeout or the status is not 200.
func (h *HTTPConn) Get(timeout time.Duration) (string, error) {
	_ = h.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(h.Conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}
