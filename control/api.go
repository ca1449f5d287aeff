package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// APIPrefix is the path prefix of the JSON API.
const APIPrefix = "/api/v1"

// maxBody bounds a request body; maxACLBody one that replaces an ACL.
const (
	maxBody    = 1 << 16
	maxACLBody = 8 << 20
)

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Token, when set, is the bearer token every request over TCP must carry; without
	// one, TCP serves reads only (see Access). Ignored when Access is set.
	Token string
	// Access gates the requests; nil means NewAccess(Token).
	Access *Access
	// Defence serves /api/v1/drops and /api/v1/services/{service}/acl (nil: empty).
	Defence DefenceSource
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// BGP serves /api/v1/bgp (nil: answered with ErrNoBGP).
	BGP *BGPAnnouncer
	// VRRP serves /api/v1/vrrp and /api/v1/vrrp/demote (nil: 404).
	VRRP VRRPSource
	// Capture serves /api/v1/capture (nil: 404).
	Capture CaptureSource
}

// NewHandler returns the HTTP API of c:
//
//	GET  /api/v1/status                                   controller state
//	GET  /api/v1/services                                 services
//	GET  /api/v1/services/{service}/backends              backends, state, recent probes
//	GET  /api/v1/counters                                 data-path counters per worker
//	GET  /api/v1/drops                                    XDP drops per service by reason, verdicts per interface
//	GET  /api/v1/services/{service}/acl                   the service's ACL rules and their hits
//	PUT  /api/v1/services/{service}/acl                   {"allow": [...], "deny": [...]} until a reload
//	POST /api/v1/services/{service}/backends/{backend}/weight   {"weight": N}
//	POST /api/v1/services/{service}/backends/{backend}/drain
//	POST /api/v1/services/{service}/backends/{backend}/enable
//	POST /api/v1/services/{service}/backends/{backend}/disable
//	POST /api/v1/reload                                   re-read the config file
//	GET  /api/v1/bgp                                      BGP sessions, announced VIPs
//	POST /api/v1/bgp/drain-host                           withdraw every VIP, keep forwarding
//	POST /api/v1/bgp/undrain-host                         announce again
//	GET  /api/v1/traffic                                  per-service and per-backend counters (ctl top)
//	GET  /api/v1/capture?service=&backend=&client=&count=&duration=&snaplen=&ring=
//	                                                      packet capture stream (capture.go)
//	GET  /metrics                                         Prometheus
//
// and the runtime changes and listings of registerRuntime (runtime_api.go).
//
// A backend is named by its name, ID or address. Errors come back as
// {"error": "..."} with a 4xx/5xx status. Requests through the unix socket
// (served with APIConnContext) may change the balancer; over TCP see Access.
func NewHandler(c *Controller, opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPrefix+"/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("GET "+APIPrefix+"/services", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Services())
	})
	mux.HandleFunc("GET "+APIPrefix+"/services/{service}/backends", func(w http.ResponseWriter, r *http.Request) {
		bs, err := c.Backends(r.PathValue("service"))
		if err != nil {
			writeErr(w, fmt.Errorf("service %q: %w", r.PathValue("service"), err))
			return
		}
		writeJSON(w, http.StatusOK, bs)
	})
	mux.HandleFunc("GET "+APIPrefix+"/counters", func(w http.ResponseWriter, r *http.Request) {
		if c.opts.Stats == nil {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		writeJSON(w, http.StatusOK, c.opts.Stats.Stats())
	})
	backend := APIPrefix + "/services/{service}/backends/{backend}/"
	mux.HandleFunc("POST "+backend+"weight", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Weight *int64 `json:"weight"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Weight == nil {
			writeErr(w, fmt.Errorf("%w: want a JSON body {\"weight\": N}", config.ErrValue))
			return
		}
		if *body.Weight < 0 || *body.Weight > config.MaxWeight {
			writeErr(w, fmt.Errorf("%w: weight %d not in 0..%d", config.ErrValue, *body.Weight, config.MaxWeight))
			return
		}
		backendOp(w, r, func(s, b string) error { return c.SetWeight(s, b, uint32(*body.Weight)) })
	})
	mux.HandleFunc("POST "+backend+"drain", func(w http.ResponseWriter, r *http.Request) {
		backendOp(w, r, c.Drain)
	})
	mux.HandleFunc("POST "+backend+"enable", func(w http.ResponseWriter, r *http.Request) {
		backendOp(w, r, c.Enable)
	})
	mux.HandleFunc("POST "+backend+"disable", func(w http.ResponseWriter, r *http.Request) {
		backendOp(w, r, c.Disable)
	})
	mux.HandleFunc("POST "+APIPrefix+"/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := c.ReloadFile(""); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c.Status())
	})
	registerBGP(mux, opts.BGP)
	registerDefence(mux, opts.Defence)
	registerSetACL(mux, c)
	registerRuntime(mux, c)
	registerVRRP(mux, opts.VRRP)
	mux.HandleFunc("GET "+APIPrefix+"/traffic", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Traffic())
	})
	mux.HandleFunc("GET "+APIPrefix+"/capture", func(w http.ResponseWriter, r *http.Request) {
		serveCapture(opts.Capture, w, r)
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	access := opts.Access
	if access == nil {
		access = NewAccess(opts.Token)
	}
	return access.Wrap(mux)
}

func backendOp(w http.ResponseWriter, r *http.Request, op func(service, backend string) error) {
	s, b := r.PathValue("service"), r.PathValue("backend")
	if err := op(s, b); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"service": s, "backend": b, "result": "ok"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var ce config.ConfigErrors
	switch {
	case errors.Is(err, ErrUnauthorized):
		code = http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, ErrNotFound), errors.Is(err, dataplane.ErrNoService):
		code = http.StatusNotFound
	case errors.Is(err, ErrRestartRequired):
		code = http.StatusConflict
	case errors.As(err, &ce), errors.Is(err, config.ErrValue):
		code = http.StatusBadRequest
	case errors.Is(err, ErrClosed):
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// OpenAPI opens the API's TCP listener a configures (TLS with api.tls_cert)
// and returns it with the token to require, refusing (ErrTokenRequired) a
// listener beyond loopback without a token.
func OpenAPI(a *config.API) (net.Listener, string, error) {
	tok, err := a.LoadToken()
	if err != nil {
		return nil, "", err
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("api listen %q: %w", a.Listen, err)
	}
	if !config.IsLoopback(host) && tok == "" {
		return nil, "", ErrTokenRequired
	}
	var tc *tls.Config
	if a.TLSCert != "" {
		if tc, err = ServerTLS(a.TLSCert, a.TLSKey, a.ClientCA); err != nil {
			return nil, "", err
		}
	}
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("api: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, tok, nil
}

// OpenAPISocket opens the API's unix socket a configures (nil when api.socket
// is none): mode 0600, or 0660 for api.socket_group.
func OpenAPISocket(a *config.API) (net.Listener, error) {
	path := a.SocketPath()
	if path == "" {
		return nil, nil
	}
	gid := -1
	if a.SocketGroup != "" {
		var err error
		if gid, err = config.LookupGroup(a.SocketGroup); err != nil {
			return nil, fmt.Errorf("api socket: %w", err)
		}
	}
	return ListenSocket(path, gid)
}

// Serve serves h on ln (TCP, TLS or the unix socket) until ctx is done, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: APIConnContext}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	return err
}
