package health

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// probeIn runs one check from the probe namespace with a timeout.
func (p *pair) probeIn(c Checker, timeout time.Duration) (Report, time.Duration, error) {
	var rep Report
	start := time.Now()
	err := p.probeRun(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		rep, err = c.Check(ctx)
		return err
	})
	return rep, time.Since(start), err
}

// kindCase is one probe of a kind against the namespace servers and what it must give.
type kindCase struct {
	name    string
	c       Checker
	want    error // nil: healthy; else errors.Is must hold
	fast    bool  // a failure must come before the timeout (a refusal, a bad reply)
	timeout time.Duration
}

func runKindCases(t *testing.T, p *pair, cases []kindCase) {
	t.Helper()
	for _, k := range cases {
		timeout := k.timeout
		if timeout == 0 {
			timeout = 2 * time.Second
		}
		_, took, err := p.probeIn(k.c, timeout)
		switch {
		case k.want == nil && err != nil:
			t.Errorf("%s (%s): %v, want healthy", k.name, k.c, err)
		case k.want == errUnknownAuthority && !errors.As(err, new(x509.UnknownAuthorityError)):
			t.Errorf("%s (%s): %v, want an unknown authority", k.name, k.c, err)
		case k.want != nil && k.want != errUnknownAuthority && !errors.Is(err, k.want):
			t.Errorf("%s (%s): %v, want %v", k.name, k.c, err, k.want)
		case k.fast && took >= timeout:
			t.Errorf("%s (%s): failed after %v, want before the timeout %v", k.name, k.c, took, timeout)
		default:
			t.Logf("%s: %v in %v", k.name, err, took.Round(time.Millisecond))
		}
	}
}

// TestNetnsKinds probes real servers in the backend namespace from the probe namespace with
// every network check kind: a UDP echo, a DNS server written with the dns library (UDP and
// TCP), a TCP listener speaking SMTP, and HTTPS with a generated self-signed certificate.
func TestNetnsKinds(t *testing.T) {
	skipUnlessRoot(t)
	p := newPair(t)
	be := beAddr.Addr()
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(be, port) }

	go serveUDPEcho(p.beListenUDP(t, at(7).String()))
	zone := p.serveDNS(t, at(53).String())
	go serveSMTP(p.beListen(t, at(25).String()), "220 mx.test ESMTP ready", false)
	go serveSMTP(p.beListen(t, at(2525).String()), "554 5.3.2 no service", false)
	go serveSMTP(p.beListen(t, at(2526).String()), "", true)
	cert, pool := selfSigned(t, []string{"backend.test"}, []netip.Addr{be}, 24*time.Hour)
	sni := serveTLS(t, p.beListen(t, at(443).String()), cert)
	const silentUDP = 9 // nothing listens: ICMP port unreachable

	t.Run("udp", func(t *testing.T) {
		runKindCases(t, p, []kindCase{
			{name: "any reply", c: &UDP{Target: at(7), Payload: []byte("ping")}},
			{name: "expected reply", c: &UDP{Target: at(7), Payload: []byte("ping"), Expect: []byte("echo:ping")}},
			{name: "other reply", c: &UDP{Target: at(7), Payload: []byte("ping"), Expect: []byte("pong")}, want: ErrReply, timeout: 300 * time.Millisecond},
			{name: "port unreachable", c: &UDP{Target: at(silentUDP), Payload: []byte("ping")}, want: syscall.ECONNREFUSED, fast: true},
			{name: "no reply", c: &UDP{Target: at(7), Payload: []byte("quiet")}, want: ErrTimeout, timeout: 300 * time.Millisecond},
		})
	})
	t.Run("dns", func(t *testing.T) {
		runKindCases(t, p, []kindCase{
			{name: "A", c: &DNS{Target: at(53), Name: "www.test", Answers: []string{"198.18.77.10"}}},
			{name: "MX", c: &DNS{Target: at(53), Name: "www.test.", Type: dns.TypeMX, Answers: []string{"10 mx.test."}}},
			{name: "wrong answer", c: &DNS{Target: at(53), Name: "www.test", Answers: []string{"198.18.77.11"}}, want: ErrReply, fast: true},
			{name: "nxdomain expected", c: &DNS{Target: at(53), Name: "gone.test", Rcode: dns.RcodeNameError}},
			{name: "nxdomain", c: &DNS{Target: at(53), Name: "gone.test"}, want: ErrReply, fast: true},
			{name: "tcp", c: &DNS{Target: at(53), Name: "www.test", TCP: true}},
			{name: "port unreachable", c: &DNS{Target: at(silentUDP), Name: "www.test"}, want: syscall.ECONNREFUSED, fast: true},
		})
		tcpBefore := zone.tcp.Load()
		runKindCases(t, p, []kindCase{{name: "truncated: tcp fallback", c: &DNS{Target: at(53), Name: "many.test", Answers: []string{"198.18.78.60"}}}})
		if zone.tcp.Load() != tcpBefore+1 {
			t.Errorf("truncated reply: %d tcp queries, want 1", zone.tcp.Load()-tcpBefore)
		}
	})
	t.Run("smtp", func(t *testing.T) {
		runKindCases(t, p, []kindCase{
			{name: "banner ehlo quit", c: &SMTP{Target: at(25)}},
			{name: "554 banner", c: &SMTP{Target: at(2525)}, want: ErrReply, fast: true},
			{name: "silent server", c: &SMTP{Target: at(2526)}, want: ErrTimeout, timeout: 300 * time.Millisecond},
			{name: "refused", c: &SMTP{Target: at(26)}, want: syscall.ECONNREFUSED, fast: true},
		})
	})
	t.Run("tls", func(t *testing.T) {
		get := &HTTP{Path: "/healthz", ExpectBody: "ok"}
		runKindCases(t, p, []kindCase{
			{name: "sni verified", c: &TLS{Target: at(443), ServerName: "backend.test", RootCAs: pool}},
			{name: "no sni, address verified", c: &TLS{Target: at(443), RootCAs: pool}},
			{name: "sni then http", c: &TLS{Target: at(443), ServerName: "backend.test", RootCAs: pool, HTTP: get}},
			{name: "http status", c: &TLS{Target: at(443), ServerName: "backend.test", RootCAs: pool, HTTP: &HTTP{Path: "/down"}}, want: ErrStatus, fast: true},
			{name: "untrusted", c: &TLS{Target: at(443), ServerName: "backend.test"}, want: errUnknownAuthority, fast: true},
			{name: "untrusted, verify off", c: &TLS{Target: at(443), ServerName: "other.test", InsecureSkipVerify: true}},
			{name: "expires too soon", c: &TLS{Target: at(443), ServerName: "backend.test", RootCAs: pool, MinExpiry: 48 * time.Hour}, want: ErrReply, fast: true},
			{name: "refused", c: &TLS{Target: at(444)}, want: syscall.ECONNREFUSED, fast: true},
		})
		if _, _, err := p.probeIn(&TLS{Target: at(443), ServerName: "sni.backend.test", InsecureSkipVerify: true}, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := sni.last(); got != "sni.backend.test" {
			t.Errorf("server saw SNI %q", got)
		}
		if _, _, err := p.probeIn(&TLS{Target: at(443), RootCAs: pool}, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := sni.last(); got != "" {
			t.Errorf("server saw SNI %q, want none", got)
		}
	})
}

// errUnknownAuthority stands for a certificate signed by an authority the probe does not
// trust (x509.UnknownAuthorityError, matched with errors.As in runKindCases).
var errUnknownAuthority = errors.New("certificate signed by unknown authority")
