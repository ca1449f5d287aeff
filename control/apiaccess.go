package control

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrForbidden is the API's answer to a change over TCP when no token is set: changes then
// go through the unix socket only.
var ErrForbidden = errors.New("forbidden: a change over TCP needs api.token (or use the unix socket)")

// Peer is who is on the other end of an API connection.
type Peer struct {
	// Local is true for the unix socket: its file permissions decided who could connect.
	Local bool
	// UID and GID are the unix socket peer's credentials (SO_PEERCRED), -1 over TCP.
	UID, GID int
}

type peerKey struct{}

// PeerOf returns the peer of a request served by a server whose ConnContext is
// APIConnContext (a TCP peer when unknown).
func PeerOf(r *http.Request) Peer {
	if p, ok := r.Context().Value(peerKey{}).(Peer); ok {
		return p
	}
	return Peer{UID: -1, GID: -1}
}

// APIConnContext is http.Server.ConnContext for the API: it records whether the connection
// came through the unix socket and, if so, the peer's credentials.
func APIConnContext(ctx context.Context, c net.Conn) context.Context {
	p := Peer{UID: -1, GID: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		p.Local = true
		if raw, err := uc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					p.UID, p.GID = int(cred.Uid), int(cred.Gid)
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// Access is the API's gate. A request through the unix socket may read and change (who may
// connect is up to the socket's owner, group and mode). Over TCP, with a token set, every
// request must carry it (compared in constant time); without one, reads are served and
// changes refused (ErrForbidden). Failed authentications are counted and answered after a
// delay that doubles with each failure from the same address (up to MaxAuthDelay), and
// falls back once it stops failing.
type Access struct {
	// MinDelay and MaxDelay bound the failed-authentication delay; 0 means MinAuthDelay
	// and MaxAuthDelay.
	MinDelay, MaxDelay time.Duration
	// Log, when set, records every change let through (method, path, and the socket
	// peer's uid or the TCP peer's address) and every refusal.
	Log *slog.Logger

	token []byte

	failures atomic.Uint64
	mu       sync.Mutex
	recent   map[netip.Addr]*authFail
	waiting  chan struct{} // slots of failed requests being held back
}

type authFail struct {
	n    int
	last time.Time
}

// Limits of the failed-authentication slowdown.
const (
	// MinAuthDelay is the delay of a first failure; each further failure from the same
	// address within AuthForget doubles it.
	MinAuthDelay = 100 * time.Millisecond
	// MaxAuthDelay caps the delay.
	MaxAuthDelay = 3 * time.Second
	// AuthForget is how long an address's failures are remembered.
	AuthForget = time.Minute
	// maxAuthTracked bounds the addresses remembered.
	maxAuthTracked = 4096
	// maxAuthWaiting bounds the failed requests held back at once; beyond it a failure is
	// answered at once (and its connection closed), so a flood of bad tokens cannot pile
	// up goroutines.
	maxAuthWaiting = 64
)

// NewAccess returns the gate for token ("" = none).
func NewAccess(token string) *Access {
	a := &Access{recent: map[netip.Addr]*authFail{}, waiting: make(chan struct{}, maxAuthWaiting)}
	if token != "" {
		a.token = []byte("Bearer " + token)
	}
	return a
}

// AuthFailures returns the failed authentications so far.
func (a *Access) AuthFailures() uint64 { return a.failures.Load() }

// Wrap returns h behind the gate.
func (a *Access) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		change := r.Method != http.MethodGet && r.Method != http.MethodHead
		if PeerOf(r).Local {
			a.audit(r, change, "allowed")
			h.ServeHTTP(w, r)
			return
		}
		if a.token != nil {
			got := []byte(r.Header.Get("Authorization"))
			if subtle.ConstantTimeCompare(got, a.token) != 1 {
				a.audit(r, true, "refused: bad token")
				a.fail(w, r)
				w.Header().Set("WWW-Authenticate", `Bearer realm="xlb"`)
				writeErr(w, ErrUnauthorized)
				return
			}
			a.succeed(r)
			a.audit(r, change, "allowed")
			h.ServeHTTP(w, r)
			return
		}
		if change {
			a.audit(r, true, "refused: no token set")
			writeErr(w, ErrForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// audit logs a change (or a refusal) with who asked.
func (a *Access) audit(r *http.Request, change bool, outcome string) {
	if a.Log == nil || !change {
		return
	}
	p := PeerOf(r)
	if p.Local {
		a.Log.Info("api change", "outcome", outcome, "method", r.Method, "path", r.URL.Path, "via", "socket", "uid", p.UID, "gid", p.GID)
		return
	}
	a.Log.Info("api change", "outcome", outcome, "method", r.Method, "path", r.URL.Path, "via", "tcp", "peer", r.RemoteAddr)
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// fail counts a failed authentication and holds the answer back.
func (a *Access) fail(w http.ResponseWriter, r *http.Request) {
	a.failures.Add(1)
	select {
	case a.waiting <- struct{}{}:
		defer func() { <-a.waiting }()
	default:
		w.Header().Set("Connection", "close") // too many held back already
		return
	}
	ip := remoteAddr(r)
	now := time.Now()
	a.mu.Lock()
	f := a.recent[ip]
	if f == nil || now.Sub(f.last) > AuthForget {
		if len(a.recent) >= maxAuthTracked {
			a.forgetLocked(now)
		}
		f = &authFail{}
		a.recent[ip] = f
	}
	f.n++
	f.last = now
	n := f.n
	a.mu.Unlock()
	lo, hi := a.MinDelay, a.MaxDelay
	if lo <= 0 {
		lo = MinAuthDelay
	}
	if hi <= 0 {
		hi = MaxAuthDelay
	}
	d := min(lo<<min(n-1, 16), hi)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// forgetLocked drops stale addresses, or all of them if none is stale (a flood of
// addresses must not grow the map).
func (a *Access) forgetLocked(now time.Time) {
	for ip, f := range a.recent {
		if now.Sub(f.last) > AuthForget {
			delete(a.recent, ip)
		}
	}
	if len(a.recent) >= maxAuthTracked {
		clear(a.recent)
	}
}

func (a *Access) succeed(r *http.Request) {
	ip := remoteAddr(r)
	a.mu.Lock()
	delete(a.recent, ip)
	a.mu.Unlock()
}
