package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/internal/lab/decap"
)

// Backend is a backend host; HTTP is its server (nil with Config.NoHTTP).
type Backend struct {
	*Host
	Name  string // "b0", "b1", ...: what its HTTP server answers
	HTTP  *HTTPServer
	Decap *decap.Program // the ingress decap program on eth0 (Config.Decap), else nil
}

// ErrNoHTTP is returned by Backend.Kill and Revive when the backend has no HTTP server.
var ErrNoHTTP = errors.New("lab: backend has no HTTP server")

// Kill makes the backend dead: its HTTP server's listener and connections close, so
// connects are refused (see HTTPServer.Kill; Net.Unplug makes it unreachable instead).
func (b *Backend) Kill() error {
	if b.HTTP == nil {
		return ErrNoHTTP
	}
	return b.HTTP.Kill()
}

// Revive brings the backend's HTTP server back after Kill.
func (b *Backend) Revive() error {
	if b.HTTP == nil {
		return ErrNoHTTP
	}
	return b.HTTP.Revive()
}

// Listen opens a listener inside the namespace (network "tcp", "tcp4", "tcp6"). Accepted
// connections live in the namespace. Close closes it if the caller has not.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s %s: %w", n.name, network, addr, err)
	}
	return l, n.track(l)
}

// ListenPacket opens a packet socket ("udp", "udp4", "udp6") inside the namespace.
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s %s: %w", n.name, network, addr, err)
	}
	return c, n.track(c)
}

// Dial connects from inside the namespace.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return n.DialWith(ctx, &d, network, addr)
}

// DialWith connects from inside the namespace with dialer d (e.g. with a LocalAddr).
func (n *NS) DialWith(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s %s: %w", n.name, network, addr, err)
	}
	return c, nil
}

// HTTPServer is a backend's HTTP server: "/" answers the backend's name (body and the
// X-Backend header), "/healthz" answers 200 "ok" (503 after SetHealthy(false)).
// Kill makes it a dead backend (listener and every connection closed: connects are
// refused), Revive brings it back on the same port.
type HTTPServer struct {
	ns   *NS
	name string
	port int

	healthy  atomic.Bool
	requests atomic.Uint64
	delay    atomic.Int64 // time.Duration before each answer

	mu  sync.Mutex
	srv *http.Server
}

// ServeHTTP starts an HTTP server in the namespace on every address (IPv4 and IPv6, so on
// the VIP on lo and on the host's own address) at port. It runs until Kill or Close.
func (n *NS) ServeHTTP(name string, port int) (*HTTPServer, error) {
	s := &HTTPServer{ns: n, name: name, port: port}
	s.healthy.Store(true)
	if err := s.Revive(); err != nil {
		return nil, err
	}
	return s, n.track(s)
}

func (s *HTTPServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !s.wait(r) {
			return
		}
		if !s.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !s.wait(r) {
			return
		}
		s.requests.Add(1)
		w.Header().Set("X-Backend", s.name)
		_, _ = w.Write([]byte(s.name + "\n"))
	})
	return mux
}

// wait sleeps the configured delay, or until the request is cancelled (false).
func (s *HTTPServer) wait(r *http.Request) bool {
	d := time.Duration(s.delay.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// SetDelay makes every answer ("/" and "/healthz") wait d first: a slow backend, e.g. for
// health-check timeouts. 0 answers at once.
func (s *HTTPServer) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Revive starts serving again after Kill (a no-op when alive).
func (s *HTTPServer) Revive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	var l net.Listener
	err := s.ns.Do(func() (err error) {
		l, err = net.Listen("tcp", ":"+strconv.Itoa(s.port))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: http listen :%d: %w", s.ns.name, s.port, err)
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	s.srv = srv
	go func() { _ = srv.Serve(l) }()
	return nil
}

// Kill closes the listener and every open connection at once (a crashed backend).
func (s *HTTPServer) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	s.srv = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%s: kill http: %w", s.ns.name, err)
	}
	return nil
}

// Close is Kill; the namespace's Close calls it.
func (s *HTTPServer) Close() error { return s.Kill() }

// Alive reports whether the server is serving.
func (s *HTTPServer) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// SetHealthy makes /healthz answer 200 (true) or 503 (false) while "/" keeps serving.
func (s *HTTPServer) SetHealthy(ok bool) { s.healthy.Store(ok) }

// Requests is the number of "/" requests served so far.
func (s *HTTPServer) Requests() uint64 { return s.requests.Load() }

// Port is the server's port.
func (s *HTTPServer) Port() int { return s.port }

// AttachDecap loads the IPIP decapsulation program and attaches it to ifname's ingress
// in the namespace. Close releases it.
func (n *NS) AttachDecap(ifname string) (*decap.Program, error) {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: find %s: %w", n.name, ifname, err)
	}
	p, err := decap.Load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", n.name, ErrUnsupported, err)
	}
	if err := p.Attach(n.nl, l.Attrs().Index); err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	return p, n.track(p)
}
