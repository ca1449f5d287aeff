package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// ErrAPI is wrapped by errors the API answered with.
var ErrAPI = errors.New("api error")

// Client talks to a running xlb's HTTP API (what `xlb ctl` uses).
type Client struct {
	// Base is the API's base URL, e.g. http://127.0.0.1:9440 or https://...; with Socket
	// it may be empty.
	Base string
	// Socket, when set, is the unix socket to talk through (Base is then ignored).
	Socket string
	// TLS configures an https Base (see ClientTLS); nil means Go's defaults.
	TLS *tls.Config
	// Token, when set, is sent as a bearer token.
	Token string
	// HTTP is the client to use; nil means one with a 10s timeout.
	HTTP *http.Client
}

// APIError is an error status from the API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("api: %d %s", e.Status, e.Message) }
func (e *APIError) Unwrap() error { return ErrAPI }

// Status returns the controller's state.
func (c *Client) Status(ctx context.Context) (ControllerStatus, error) {
	var st ControllerStatus
	return st, c.do(ctx, http.MethodGet, "/status", nil, &st)
}

// Services lists the services.
func (c *Client) Services(ctx context.Context) ([]ServiceStatus, error) {
	var out []ServiceStatus
	return out, c.do(ctx, http.MethodGet, "/services", nil, &out)
}

// Backends lists a service's backends.
func (c *Client) Backends(ctx context.Context, service string) ([]BackendStatus, error) {
	var out []BackendStatus
	return out, c.do(ctx, http.MethodGet, "/services/"+url.PathEscape(service)+"/backends", nil, &out)
}

// SetWeight sets a backend's weight.
func (c *Client) SetWeight(ctx context.Context, service, backend string, w uint32) error {
	return c.do(ctx, http.MethodPost, backendPath(service, backend, "weight"), map[string]uint32{"weight": w}, nil)
}

// Drain sets a backend's weight to 0.
func (c *Client) Drain(ctx context.Context, service, backend string) error {
	return c.do(ctx, http.MethodPost, backendPath(service, backend, "drain"), nil, nil)
}

// Enable enables a backend.
func (c *Client) Enable(ctx context.Context, service, backend string) error {
	return c.do(ctx, http.MethodPost, backendPath(service, backend, "enable"), nil, nil)
}

// Disable disables a backend.
func (c *Client) Disable(ctx context.Context, service, backend string) error {
	return c.do(ctx, http.MethodPost, backendPath(service, backend, "disable"), nil, nil)
}

// Reload has the server re-read its configuration file.
func (c *Client) Reload(ctx context.Context) (ControllerStatus, error) {
	var st ControllerStatus
	return st, c.do(ctx, http.MethodPost, "/reload", nil, &st)
}

// Drops returns the XDP programs' drops per service by reason and their verdicts per
// interface.
func (c *Client) Drops(ctx context.Context) (Drops, error) {
	var out Drops
	return out, c.do(ctx, http.MethodGet, "/drops", nil, &out)
}

// ACL returns a service's ACL rules and their hits.
func (c *Client) ACL(ctx context.Context, service string) ([]dataplane.RuleHits, error) {
	var out []dataplane.RuleHits
	return out, c.do(ctx, http.MethodGet, "/services/"+url.PathEscape(service)+"/acl", nil, &out)
}

// SetACL replaces a service's ACL until the next reload.
func (c *Client) SetACL(ctx context.Context, service string, allow, deny []netip.Prefix) error {
	return c.do(ctx, http.MethodPut, "/services/"+url.PathEscape(service)+"/acl", ACLRequest{Allow: allow, Deny: deny}, nil)
}

// Raw fetches an API path (below /api/v1) and returns the body as is.
func (c *Client) Raw(ctx context.Context, path string) ([]byte, error) {
	var raw json.RawMessage
	err := c.do(ctx, http.MethodGet, path, nil, &raw)
	return raw, err
}

// baseURL is the URL the API paths are appended to: Base, or a placeholder host when
// the client talks to a unix socket.
func (c *Client) baseURL() string {
	if c.Socket != "" {
		return "http://xlb"
	}
	return strings.TrimSuffix(c.Base, "/")
}

// transport is the round tripper of a client without its own HTTP: TLS as configured,
// dialing the unix socket when Socket is set.
func (c *Client) transport() http.RoundTripper {
	if c.HTTP != nil && c.HTTP.Transport != nil {
		return c.HTTP.Transport
	}
	tr := &http.Transport{TLSClientConfig: c.TLS, Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}
	if c.Socket != "" {
		tr.DialContext, tr.Proxy = socketDialer(c.Socket), nil
	}
	return tr
}

func backendPath(service, backend, op string) string {
	return "/services/" + url.PathEscape(service) + "/backends/" + url.PathEscape(backend) + "/" + op
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := "application/json"
	switch v := in.(type) {
	case nil:
	case rawDoc: // a YAML or JSON document as is (runtime_api.go)
		body, ctype = bytes.NewReader(v), docType(v)
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL()+APIPrefix+path, body)
	if err != nil {
		return fmt.Errorf("api request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second, Transport: c.transport()}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("api: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*rawBody); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: decode answer: %w", err)
	}
	return nil
}
