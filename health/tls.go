package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"time"
)

// TLS checks that a TLS handshake with Target completes: with ServerName sent as SNI (none
// when empty), and, unless InsecureSkipVerify, a certificate chain that verifies against
// RootCAs for ServerName (or Target's address) and is valid now. With HTTP set, the GET of
// that check then runs over the same connection (HTTP.Target and HTTP.TLS are ignored).
type TLS struct {
	// Target is the address and port to connect to.
	Target netip.AddrPort
	// ServerName is sent as SNI and is the name the certificate must carry.
	ServerName string
	// InsecureSkipVerify accepts any certificate (the handshake must still complete).
	InsecureSkipVerify bool
	// RootCAs verifies the certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// MinExpiry, when set, fails the probe when the leaf certificate expires sooner.
	MinExpiry time.Duration
	// HTTP, when set, is sent over the established TLS connection.
	HTTP *HTTP
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check connects, completes the handshake and, optionally, runs the HTTP exchange.
func (c *TLS) Check(ctx context.Context) (Report, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return Report{}, fmt.Errorf("%s: %w: target needs an address and a port", c, ErrConfig)
	}
	var h HTTP
	if c.HTTP != nil {
		h = *c.HTTP
		h.Target, h.TLS = c.Target, true
		if err := h.validate(); err != nil {
			return Report{}, err
		}
	}
	conn, err := c.Dialer.dialTCP(ctx, c.Target)
	if err != nil {
		return Report{}, timeoutErr(ctx, "tls connect", err)
	}
	defer conn.Close()
	defer deadline(ctx, conn)()
	tc := tls.Client(conn, c.config())
	if err := tc.HandshakeContext(ctx); err != nil {
		return Report{}, timeoutErr(ctx, "tls handshake", err)
	}
	if c.MinExpiry > 0 {
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return Report{}, fmt.Errorf("%w: tls %s: no certificate", ErrReply, c.Target)
		}
		if left := time.Until(certs[0].NotAfter); left < c.MinExpiry {
			return Report{}, fmt.Errorf("%w: tls %s: certificate expires in %v (at %v)", ErrReply, c.Target,
				left.Round(time.Second), certs[0].NotAfter)
		}
	}
	if c.HTTP == nil {
		// A clean close_notify; its error says nothing about the server's health.
		_ = tc.Close()
		return Report{}, nil
	}
	return h.exchange(ctx, tc)
}

// config is one probe's client configuration (no session reuse between probes).
func (c *TLS) config() *tls.Config {
	cfg := &tls.Config{
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
		RootCAs:            c.RootCAs,
		MinVersion:         tls.VersionTLS12,
	}
	if c.ServerName == "" && !c.InsecureSkipVerify {
		// No SNI, but the certificate must still carry the address.
		addr := c.Target.Addr().String()
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyChain(cs, c.RootCAs, addr)
		}
	}
	return cfg
}

// verifyChain verifies the peer's chain for name, as crypto/tls would.
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate", ErrReply)
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// String returns "tls ADDR:PORT" with the SNI name, if any.
func (c *TLS) String() string {
	s := "tls " + c.Target.String()
	if c.ServerName != "" {
		s += " sni=" + c.ServerName
	}
	if c.HTTP != nil {
		p := c.HTTP.Path
		if p == "" {
			p = "/"
		}
		s += " GET " + p
	}
	return s
}
