package control

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a throw-away CA with certificates it signed, written as PEM files.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), next: 2}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	p.ca, err = x509.ParseCertificate(der)
	must(t, err)
	p.key = key
	p.write(t, name+".pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// issue signs a certificate for name (a server for 127.0.0.1 when server is set, else a
// client) and returns the certificate and key files.
func (p *pki) issue(t *testing.T, name string, server bool) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	p.next++
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.key)
	must(t, err)
	kd, err := x509.MarshalECPrivateKey(k)
	must(t, err)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kd)
}

func (p *pki) caFile() string { return filepath.Join(p.dir, p.ca.Subject.CommonName+".pem") }

// serveTLS serves the API with token over TLS (mutual with clientCA) on loopback.
func serveTLS(t *testing.T, h http.Handler, cert, key, clientCA string) string {
	t.Helper()
	cfg, err := ServerTLS(cert, key, clientCA)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	serveOn(t, tls.NewListener(ln, cfg), h)
	return ln.Addr().String()
}

func tlsClient(t *testing.T, addr, token, ca, cert, key string) *Client {
	t.Helper()
	cfg, err := ClientTLS(ca, cert, key)
	must(t, err)
	return &Client{Base: "https://" + addr, Token: token, TLS: cfg}
}

// TestAPITLS: over TLS the token works as over plain TCP; a client that does not trust the
// server's CA fails, and a plain HTTP request to the TLS port is refused.
func TestAPITLS(t *testing.T) {
	r := newRig(t, twoSvc)
	ctx := context.Background()
	ca := newPKI(t, "xlb-ca")
	cert, key := ca.issue(t, "xlb-api", true)
	addr := serveTLS(t, NewHandler(r.c, HandlerOptions{Token: "tls-token"}), cert, key, "")

	must(t, tlsClient(t, addr, "tls-token", ca.caFile(), "", "").Drain(ctx, "web", "a"))
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Errorf("drain over tls: weight %d", w)
	}
	var ae *APIError
	if err := tlsClient(t, addr, "", ca.caFile(), "", "").Enable(ctx, "web", "a"); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("change over tls without the token: %v, want 401", err)
	}
	other := newPKI(t, "other-ca")
	var uerr *tls.CertificateVerificationError
	if _, err := tlsClient(t, addr, "tls-token", other.caFile(), "", "").Services(ctx); !errors.As(err, &uerr) {
		t.Errorf("client trusting another CA: %v, want a certificate verification error", err)
	}
	// Plain HTTP to the TLS port: answered 400 by the TLS layer, never by the API.
	c, err := net.Dial("tcp", addr)
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST %s/services/web/backends/a/enable HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tls-token\r\nContent-Length: 0\r\n\r\n", APIPrefix)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain http to the tls port: %d, want 400", resp.StatusCode)
	}
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Errorf("plain http request applied: weight %d", w)
	}
}

// TestAPIMutualTLS: with a client CA, only clients with a certificate it signed get
// through (and changes still need the token).
func TestAPIMutualTLS(t *testing.T) {
	r := newRig(t, twoSvc)
	ctx := context.Background()
	ca := newPKI(t, "xlb-ca")
	cert, key := ca.issue(t, "xlb-api", true)
	clients := newPKI(t, "clients-ca")
	ccert, ckey := clients.issue(t, "operator", false)
	rogue := newPKI(t, "rogue-ca")
	rcert, rkey := rogue.issue(t, "intruder", false)
	addr := serveTLS(t, NewHandler(r.c, HandlerOptions{Token: "m-token"}), cert, key, clients.caFile())

	must(t, tlsClient(t, addr, "m-token", ca.caFile(), ccert, ckey).Drain(ctx, "web", "a"))
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Errorf("drain over mutual tls: weight %d", w)
	}
	for name, cl := range map[string]*Client{
		"no client certificate":     tlsClient(t, addr, "m-token", ca.caFile(), "", ""),
		"certificate of another CA": tlsClient(t, addr, "m-token", ca.caFile(), rcert, rkey),
	} {
		err := cl.Enable(ctx, "web", "a")
		var ae *APIError
		if err == nil || errors.As(err, &ae) {
			t.Errorf("%s: %v, want the handshake refused", name, err)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Logf("%s: %v", name, err)
		}
	}
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Errorf("refused clients changed the weight to %d", w)
	}
	if _, err := ServerTLS(cert, key, filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, ErrTLS) {
		t.Errorf("missing client CA: %v, want ErrTLS", err)
	}
	if _, err := ServerTLS(key, cert, ""); !errors.Is(err, ErrTLS) {
		t.Errorf("certificate and key swapped: %v, want ErrTLS", err)
	}
}

// TestAPITLSRenewal: a renewed certificate (the files rewritten) is served from the next
// connection on, without a restart.
func TestAPITLSRenewal(t *testing.T) {
	r := newRig(t, twoSvc)
	ca := newPKI(t, "xlb-ca")
	cert, key := ca.issue(t, "xlb-api", true)
	addr := serveTLS(t, NewHandler(r.c, HandlerOptions{}), cert, key, "")
	serial := func() int64 {
		t.Helper()
		cfg, err := ClientTLS(ca.caFile(), "", "")
		must(t, err)
		c, err := tls.Dial("tcp", addr, cfg)
		must(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	first := serial()
	cert2, key2 := ca.issue(t, "xlb-api-renewed", true)
	for _, f := range [][2]string{{cert2, cert}, {key2, key}} {
		data, err := os.ReadFile(f[0])
		must(t, err)
		must(t, os.WriteFile(f[1], data, 0o600))
		future := time.Now().Add(time.Minute) // a modification time that surely differs
		must(t, os.Chtimes(f[1], future, future))
	}
	if second := serial(); second == first {
		t.Errorf("serial %d still served after the renewal", second)
	}
}
