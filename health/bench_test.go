package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// benchCheck runs one checker per iteration against a loopback server.
func benchCheck(b *testing.B, c Checker) {
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Check(pctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckTCP(b *testing.B) {
	s, _ := newHTTPServer(b, false)
	benchCheck(b, &TCP{Target: netip.MustParseAddrPort(s.Listener.Addr().String())})
}

func BenchmarkCheckHTTP(b *testing.B) {
	s, _ := newHTTPServer(b, false)
	benchCheck(b, &HTTP{Target: netip.MustParseAddrPort(s.Listener.Addr().String()), Path: "/ok", ExpectBody: "alive"})
}

func BenchmarkCheckHTTPS(b *testing.B) {
	s, _ := newHTTPServer(b, true)
	benchCheck(b, &HTTP{Target: netip.MustParseAddrPort(s.Listener.Addr().String()), TLS: true,
		InsecureSkipVerify: true, Path: "/ok", ExpectBody: "alive"})
}

func BenchmarkCheckICMP(b *testing.B) {
	benchCheck(b, &ICMP{Target: netip.MustParseAddr("127.0.0.1")})
}

// BenchmarkRecord is the Monitor's per-probe bookkeeping (history ring, rise/fall).
func BenchmarkRecord(b *testing.B) {
	r := &running{check: Check{ID: "x"}, tr: tracker{state: StateUp, rise: 2, fall: 3}, history: make([]Result, 0, DefaultHistory)}
	res := Result{Time: time.Now(), OK: true, Latency: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		r.record(res)
	}
}

// TestRecordAllocs: recording a probe that changes nothing allocates nothing.
func TestRecordAllocs(t *testing.T) {
	r := &running{check: Check{ID: "x"}, tr: tracker{state: StateUp, rise: 2, fall: 3}, history: make([]Result, 0, 4)}
	ok := Result{Time: time.Now(), OK: true}
	fail := Result{Time: time.Now(), Err: "refused"}
	if n := testing.AllocsPerRun(100, func() { r.record(ok); r.record(fail); r.record(ok) }); n != 0 {
		t.Fatalf("%v allocations per record", n)
	}
	if r.tr.state != StateUp || r.probes < 300 || len(r.history) != 4 {
		t.Fatalf("state %v after %d probes, history %d", r.tr.state, r.probes, len(r.history))
	}
}

// BenchmarkBaselineDial is the floor for a TCP check: a bare net.Dial and Close.
func BenchmarkBaselineDial(b *testing.B) {
	s, _ := newHTTPServer(b, false)
	addr := s.Listener.Addr().String()
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkBaselineHTTPClient is what an HTTP check costs with net/http's client instead of
// one hand-driven request (keep-alives off, so each GET opens a connection too).
func BenchmarkBaselineHTTPClient(b *testing.B) {
	s, _ := newHTTPServer(b, false)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	url := s.URL + "/ok"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, DefaultMaxBody))
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "alive") {
			b.Fatal(resp.StatusCode, err)
		}
	}
}
