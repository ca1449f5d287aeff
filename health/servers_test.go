package health

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Servers for the check kinds, each listening inside the pair's "be" namespace (the socket is
// made on a thread in that namespace and stays there) and served by ordinary goroutines.

// beListen opens a TCP listener at addr in the be namespace, closed in t.Cleanup.
func (p *pair) beListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := p.beRun(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// beListenUDP opens a UDP socket at addr in the be namespace, closed in t.Cleanup.
func (p *pair) beListenUDP(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	if err := p.beRun(func() (err error) { c, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveUDPEcho answers every datagram with "echo:" + the datagram, except "quiet" ones.
func serveUDPEcho(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if string(buf[:n]) == "quiet" {
			continue
		}
		_, _ = c.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}

// dnsZone is what the test DNS server answers: www.test. A 198.18.77.10, many.test. with 60 A
// records (too big for 512 bytes of UDP: truncated, so the checker must retry over TCP), an
// MX, and NXDOMAIN for anything else. It counts the queries per network.
type dnsZone struct {
	udp, tcp atomic.Int64
}

func (z *dnsZone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	_, isUDP := w.LocalAddr().(*net.UDPAddr)
	if isUDP {
		z.udp.Add(1)
	} else {
		z.tcp.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	name, qt := q.Question[0].Name, q.Question[0].Qtype
	hdr := dns.RR_Header{Name: name, Rrtype: qt, Class: dns.ClassINET, Ttl: 60}
	switch {
	case name == "www.test." && qt == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(198, 18, 77, 10)})
	case name == "www.test." && qt == dns.TypeMX:
		m.Answer = append(m.Answer, &dns.MX{Hdr: hdr, Preference: 10, Mx: "mx.test."})
	case name == "many.test." && qt == dns.TypeA:
		for i := range 60 {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(198, 18, 78, byte(i+1))})
		}
	case name == "www.test." || name == "many.test.":
	default:
		m.Rcode = dns.RcodeNameError
	}
	if isUDP {
		m.Truncate(dns.MinMsgSize)
	}
	_ = w.WriteMsg(m)
}

// serveDNS runs the zone on UDP and TCP at addr in the be namespace until t ends.
func (p *pair) serveDNS(t *testing.T, addr string) *dnsZone {
	t.Helper()
	z := &dnsZone{}
	pc, l := p.beListenUDP(t, addr), p.beListen(t, addr)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: l, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return z
}

// serveSMTP speaks enough SMTP for a check: a banner, EHLO (multi-line 250), QUIT. banner
// is the greeting line; hang makes it accept and say nothing.
func serveSMTP(l net.Listener, banner string, hang bool) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if hang {
				_, _ = c.Read(make([]byte, 1))
				return
			}
			fmt.Fprintf(c, "%s\r\n", banner)
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
				case strings.HasPrefix(cmd, "EHLO "):
					fmt.Fprintf(c, "250-mx.test greets %s\r\n250-PIPELINING\r\n250 8BITMIME\r\n", cmd[5:])
				case cmd == "QUIT":
					fmt.Fprint(c, "221 2.0.0 bye\r\n")
					return
				default:
					fmt.Fprint(c, "502 5.5.2 unknown command\r\n")
				}
			}
		}()
	}
}

// selfSigned makes a self-signed ECDSA certificate for the names and addresses, valid for
// validFor from now, and a pool that trusts it.
func selfSigned(t *testing.T, names []string, ips []netip.Addr, validFor time.Duration) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb test backend"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: names,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// sniLog records the SNI names a TLS server saw.
type sniLog struct {
	mu    sync.Mutex
	names []string
}

func (s *sniLog) add(n string) { s.mu.Lock(); s.names = append(s.names, n); s.mu.Unlock() }
func (s *sniLog) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) == 0 {
		return "<none>"
	}
	return s.names[len(s.names)-1]
}

// serveTLS serves HTTPS on l with cert: /healthz answers "ok", /down 503.
func serveTLS(t *testing.T, l net.Listener, cert tls.Certificate) *sniLog {
	sni := &sniLog{}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.add(h.ServerName)
		return nil, nil
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) })
	srv := &http.Server{Handler: mux, ErrorLog: discardLog()}
	go func() {
		if err := srv.Serve(tls.NewListener(l, cfg)); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Logf("tls server: %v", err)
		}
	}()
	t.Cleanup(func() { srv.Close() })
	return sni
}
