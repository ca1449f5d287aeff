package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultSocket is where `xlb run` puts the API's unix socket and `xlb ctl` looks for it.
const DefaultSocket = "/run/xlb/xlb.sock"

// Errors of the API listeners.
var (
	// ErrSocketInUse: another process listens on the API socket.
	ErrSocketInUse = errors.New("api socket in use by another process")
	// ErrTLS: the API's certificate, key or client CA cannot be used.
	ErrTLS = errors.New("api tls")
)

// ListenSocket creates the API's unix socket at path: owned by this process's user, mode
// 0600, or 0660 with group gid (gid < 0: no group). The socket is bound inside a private
// directory and moved to path only once its owner and mode are set, so nobody else can
// connect in between. A stale socket at path (nobody answers) is replaced; a live one is
// refused with ErrSocketInUse. Closing the listener removes path.
func ListenSocket(path string, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api socket %s: %w: exists and is not a socket", path, ErrSocketInUse)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: %w", path, ErrSocketInUse)
		}
	}
	priv, err := os.MkdirTemp(dir, ".xlb-sock-")
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Lchown(tmp, os.Getuid(), gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api socket group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket mode: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	return &socketListener{UnixListener: ln, path: path}, nil
}

type socketListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// ServerTLS returns the API's TLS configuration: the certificate and key, and with
// clientCA (a PEM file) mutual TLS that refuses clients without a certificate it signed.
// A renewed certificate and key (the files' modification time changed) are loaded on the
// next handshake; until a renewed pair loads, the previous one is used.
func ServerTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cr := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := cr.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: cr.get, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := certPool(clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certReloader serves the certificate of certFile and keyFile, reloading them when either
// file's modification time changes.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             [2]time.Time
}

func (cr *certReloader) stamps() [2]time.Time {
	var s [2]time.Time
	for i, f := range []string{cr.certFile, cr.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s[i] = fi.ModTime()
		}
	}
	return s
}

func (cr *certReloader) load() error {
	st := cr.stamps()
	cert, err := tls.LoadX509KeyPair(cr.certFile, cr.keyFile)
	if err != nil {
		return fmt.Errorf("%w: certificate %s, key %s: %w", ErrTLS, cr.certFile, cr.keyFile, err)
	}
	cr.cert, cr.stamp = &cert, st
	return nil
}

func (cr *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.stamps() != cr.stamp {
		_ = cr.load() // a half-written pair fails to load: keep serving the old one
	}
	return cr.cert, nil
}

// ClientTLS returns what `xlb ctl` uses to reach a TLS API: ca (a PEM file; empty: the
// system's roots) verifies the server, certFile and keyFile (optional) authenticate the
// client for mutual TLS.
func ClientTLS(ca, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := certPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s, key %s: %w", ErrTLS, certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: ca: %w", ErrTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: ca %s: no PEM certificate", ErrTLS, file)
	}
	return pool, nil
}

// socketDialer dials the unix socket path whatever address the HTTP client asks for.
func socketDialer(path string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}
