package health

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testTimeout bounds probes that should succeed or fail fast: generous, because the test
// machine may be heavily loaded.
const testTimeout = 10 * time.Second

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPort(t, l.Addr())
	l.Close()
	return ap
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	c := &TCP{Target: addrPort(t, l.Addr())}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatalf("open port: %v", err)
	}
	<-accepted

	c = &TCP{Target: closedPort(t)}
	_, err = c.Check(ctxTimeout(t, testTimeout))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("closed port: %v, want ECONNREFUSED", err)
	}
	if _, err := (&TCP{}).Check(ctxTimeout(t, testTimeout)); !errors.Is(err, ErrConfig) {
		t.Fatalf("no target: %v, want ErrConfig", err)
	}
}

// TestTCPTimeout fills the accept queue of a listener that never accepts: the kernel then
// drops SYNs, so a connect hangs until the probe's timeout.
func TestTCPTimeout(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
	c := &TCP{Target: target}
	for i := 0; i < 8; i++ {
		start := time.Now()
		_, err := c.Check(ctxTimeout(t, 150*time.Millisecond))
		if err == nil {
			continue // the queue still had room
		}
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("probe %d: %v, want ErrTimeout", i, err)
		}
		if d := time.Since(start); d < 140*time.Millisecond || d > time.Second {
			t.Fatalf("timed out after %v, want about 150ms", d)
		}
		return
	}
	t.Fatal("accept queue of a backlog-0 listener never filled")
}

// httpBackend serves the paths the HTTP tests probe and counts connections.
func httpBackend() (http.Handler, *atomic.Int64) {
	var conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Load", " 0.75 ")
		fmt.Fprint(w, "hello, backend alive")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "sick", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "www.example.test" {
			http.Error(w, "wrong host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("X-Load", "bogus")
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 1<<20) + "MARKER"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	return mux, &conns
}

func newHTTPServer(t testing.TB, tls bool) (*httptest.Server, *atomic.Int64) {
	h, conns := httpBackend()
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected certificates are expected here
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s, conns
}

func TestHTTP(t *testing.T) {
	s, conns := newHTTPServer(t, false)
	target := addrPort(t, s.Listener.Addr())
	cases := []struct {
		name     string
		c        HTTP
		wantErr  error
		wantLoad float64 // -1: no load
	}{
		{"ok", HTTP{Path: "/ok"}, nil, 0.75},
		{"ok with body", HTTP{Path: "/ok", ExpectBody: "alive"}, nil, 0.75},
		{"load header off", HTTP{Path: "/ok", LoadHeader: "-"}, nil, -1},
		{"other load header", HTTP{Path: "/ok", LoadHeader: "X-Other"}, nil, -1},
		{"status mismatch", HTTP{Path: "/fail"}, ErrStatus, -1},
		{"expected 503", HTTP{Path: "/fail", ExpectStatus: 503}, nil, -1},
		{"body mismatch", HTTP{Path: "/ok", ExpectBody: "dead"}, ErrBody, -1},
		{"not found", HTTP{Path: "/nope"}, ErrStatus, -1},
		{"host header", HTTP{Path: "/host", Host: "www.example.test"}, nil, -1},
		{"wrong host", HTTP{Path: "/host"}, ErrStatus, -1},
		{"body read is bounded", HTTP{Path: "/big", ExpectBody: "MARKER", MaxBody: 4096}, ErrBody, -1},
		{"big body within bound", HTTP{Path: "/big", ExpectBody: "MARKER", MaxBody: 2 << 20}, nil, -1},
		{"timeout", HTTP{Path: "/slow"}, ErrTimeout, -1},
		{"bad path", HTTP{Path: "ok"}, ErrConfig, -1},
	}
	probes := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Target = target
			start := time.Now()
			timeout := testTimeout
			if tc.wantErr == ErrTimeout {
				timeout = 300 * time.Millisecond
			}
			rep, err := c.Check(ctxTimeout(t, timeout))
			if tc.wantErr != ErrConfig {
				probes++
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == ErrTimeout && time.Since(start) > 2*time.Second {
				t.Fatalf("timeout took %v", time.Since(start))
			}
			if tc.wantLoad >= 0 && (!rep.HasLoad || rep.Load != tc.wantLoad) {
				t.Fatalf("load %+v, want %v", rep, tc.wantLoad)
			}
			if tc.wantLoad < 0 && rep.HasLoad {
				t.Fatalf("load %+v, want none", rep)
			}
		})
	}
	// No keep-alive reuse: every probe opened its own connection.
	if got := conns.Load(); got != int64(probes) {
		t.Errorf("%d connections for %d probes", got, probes)
	}
	_, err := (&HTTP{Target: closedPort(t)}).Check(ctxTimeout(t, testTimeout))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: %v", err)
	}
}

func TestHTTPS(t *testing.T) {
	s, _ := newHTTPServer(t, true)
	target := addrPort(t, s.Listener.Addr())
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())

	c := &HTTP{Target: target, TLS: true, Path: "/ok", ExpectBody: "alive", InsecureSkipVerify: true}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	c = &HTTP{Target: target, TLS: true, Path: "/ok"}
	var uerr x509.UnknownAuthorityError
	if _, err := c.Check(ctxTimeout(t, testTimeout)); !errors.As(err, &uerr) {
		t.Fatalf("self-signed without verification off: %v, want UnknownAuthorityError", err)
	}
	c.RootCAs = pool // httptest's certificate is valid for 127.0.0.1 and example.com
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatalf("verified: %v", err)
	}
	c = &HTTP{Target: target, TLS: true, Path: "/fail", InsecureSkipVerify: true}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); !errors.Is(err, ErrStatus) {
		t.Fatalf("status over TLS: %v", err)
	}
	// A TLS probe of a plain HTTP server fails in the handshake.
	plain, _ := newHTTPServer(t, false)
	c = &HTTP{Target: addrPort(t, plain.Listener.Addr()), TLS: true, InsecureSkipVerify: true}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err == nil || !strings.Contains(err.Error(), "tls handshake") {
		t.Fatalf("TLS to plain server: %v", err)
	}
}

// TestDialerControl checks that a Dialer's options reach the probe socket.
func TestDialerControl(t *testing.T) {
	s, _ := newHTTPServer(t, false)
	var calls atomic.Int32
	var mark int
	d := &Dialer{Mark: 0x5eed, Control: func(network, address string, c syscall.RawConn) error {
		calls.Add(1)
		return c.Control(func(fd uintptr) {
			mark, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
		})
	}, Source: netip.MustParseAddr("127.0.0.1")}
	if unix.Geteuid() != 0 {
		d.Mark = 0 // SO_MARK needs CAP_NET_ADMIN
	}
	c := &HTTP{Target: addrPort(t, s.Listener.Addr()), Path: "/ok", Dialer: d}
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || mark != int(d.Mark) {
		t.Fatalf("control calls %d, mark %#x, want 1 and %#x", calls.Load(), mark, d.Mark)
	}
	// A failing Control fails the probe.
	d.Control = func(string, string, syscall.RawConn) error { return errors.New("vetoed") }
	if _, err := c.Check(ctxTimeout(t, testTimeout)); err == nil || !strings.Contains(err.Error(), "vetoed") {
		t.Fatalf("vetoed dial: %v", err)
	}
	// A source address that is not local fails to bind.
	d.Control, d.Source = nil, netip.MustParseAddr("198.18.255.254")
	if _, err := c.Check(ctxTimeout(t, testTimeout)); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("foreign source: %v", err)
	}
}

func TestICMP(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::1"} {
		t.Run(a, func(t *testing.T) {
			addr := netip.MustParseAddr(a)
			if addr.Is6() && !addr.Is4In6() && !hasIPv6Loopback() {
				t.Skip("no ::1 on this host's loopback")
			}
			c := &ICMP{Target: addr}
			for i := 0; i < 3; i++ { // several probes: sequence numbers advance
				if _, err := c.Check(ctxTimeout(t, testTimeout)); err != nil {
					if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
						t.Skipf("neither raw nor ping sockets allowed: %v", err)
					}
					t.Fatalf("probe %d: %v", i, err)
				}
			}
		})
	}
	if _, err := (&ICMP{}).Check(ctxTimeout(t, testTimeout)); !errors.Is(err, ErrConfig) {
		t.Fatalf("no target: %v", err)
	}
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestMatchEchoReply(t *testing.T) {
	payload := []byte("0123456789abcdef")
	reply := append([]byte{0, 0, 0, 0, 0x12, 0x34, 0, 7}, payload...)
	if !matchEchoReply(reply, false, true, 0x1234, 7, payload) {
		t.Fatal("exact reply not matched")
	}
	if matchEchoReply(reply, true, true, 0x1234, 7, payload) {
		t.Fatal("v4 reply matched as v6")
	}
	if matchEchoReply(reply, false, true, 0x1235, 7, payload) || !matchEchoReply(reply, false, false, 0x1235, 7, payload) {
		t.Fatal("id check wrong")
	}
	if matchEchoReply(reply, false, true, 0x1234, 8, payload) {
		t.Fatal("wrong seq matched")
	}
	if matchEchoReply(reply[:20], false, true, 0x1234, 7, payload) {
		t.Fatal("short reply matched")
	}
	req := append([]byte{8}, reply[1:]...)
	if matchEchoReply(req, false, true, 0x1234, 7, payload) {
		t.Fatal("own echo request matched as reply")
	}
	other := append([]byte(nil), reply...)
	other[len(other)-1] ^= 1
	if matchEchoReply(other, false, true, 0x1234, 7, payload) {
		t.Fatal("wrong payload matched")
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Fatalf("checksum %#04x, want 0x220d", got)
	}
	// A message with its checksum filled in sums to zero; odd lengths pad with zero.
	b := []byte{8, 0, 0, 0, 1, 2, 3, 4, 5}
	c := checksum(b)
	b[2], b[3] = byte(c>>8), byte(c)
	if checksum(b) != 0 {
		t.Fatal("checksum of a checksummed message is not zero")
	}
}

// TestICMPRawFilter: a raw probe socket receives echo replies only, not (for example) the
// echo request it sent to loopback itself, which an unfiltered raw socket sees first.
func TestICMPRawFilter(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs CAP_NET_RAW for a raw ICMP socket")
	}
	for _, v6 := range []bool{false, true} {
		if v6 && !hasIPv6Loopback() {
			t.Log("no ::1 on loopback: IPv6 part skipped")
			continue
		}
		conn, raw, err := listenICMP(context.Background(), v6, false, nil)
		if err != nil || !raw {
			t.Fatalf("v6=%v: raw %v, %v", v6, raw, err)
		}
		dst, req, want := &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}, byte(icmpv4EchoRequest), byte(icmpv4EchoReply)
		if v6 {
			dst, req, want = &net.IPAddr{IP: net.IPv6loopback}, icmpv6EchoRequest, icmpv6EchoReply
		}
		msg := []byte{req, 0, 0, 0, 0xab, 0xcd, 0, 1, 'x', 'l', 'b', '!'}
		if !v6 {
			c := checksum(msg)
			msg[2], msg[3] = byte(c>>8), byte(c)
		}
		if _, err := conn.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
		var buf [1500]byte
		n, _, err := conn.ReadFrom(buf[:])
		conn.Close()
		if err != nil {
			t.Fatalf("v6=%v: %v", v6, err)
		}
		if n < 8 || buf[0] != want {
			t.Fatalf("v6=%v: first message type %d, want the echo reply %d", v6, buf[0], want)
		}
	}
}

// TestCancelIsNotTimeout: a probe cancelled by its caller says so, not "timed out".
func TestCancelIsNotTimeout(t *testing.T) {
	s, _ := newHTTPServer(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := (&HTTP{Target: addrPort(t, s.Listener.Addr()), Path: "/slow"}).Check(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled probe: %v", err)
	}
}
