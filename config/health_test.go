package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHealthKindErrors: the new kinds' rules, each refused at its file:line.
func TestHealthKindErrors(t *testing.T) {
	h := base + "    health:\n"
	for _, tt := range []struct {
		name   string
		yaml   string
		line   int
		reason error
		text   string
	}{
		{"exec without command", h + "      kind: exec\n", 10, ErrMissing, "needs a command"},
		{"shell with words", h + "      kind: exec\n      shell: true\n      command: [a, b]\n", 12, ErrValue, "one string"},
		{"bad env", h + "      kind: exec\n      command: [x]\n      env: [NOEQUALS]\n", 12, ErrValue, "NAME=value"},
		{"exec port", h + "      kind: exec\n      command: [x]\n      port: 80\n", 12, ErrValue, "uses no port"},
		{"exec through vip", h + "      kind: exec\n      command: [x]\n      through_vip: true\n", 12, ErrValue, "no probe"},
		{"exec user unknown", h + "      kind: exec\n      command: [x]\n      user: xlb-no-such-user\n", 12, ErrValue, "user xlb-no-such-user"},
		{"dns without query", h + "      kind: dns\n", 10, ErrMissing, "needs a query"},
		{"dns type", h + "      kind: dns\n      query: a.test\n      query_type: BOGUS\n", 12, ErrValue, "not a DNS type"},
		{"dns rcode", h + "      kind: dns\n      query: a.test\n      expect_rcode: FINE\n", 12, ErrValue, "not a DNS rcode"},
		{"field of another kind", h + "      kind: udp\n      helo: mx\n", 11, ErrValue, "only used by kind smtp"},
		{"command for tcp", h + "      command: [x]\n", 10, ErrValue, "only used by kind exec"},
		{"tls path", h + "      kind: tls\n      path: x\n", 11, ErrValue, "must start with /"},
		{"min expiry for http", h + "      kind: http\n      min_expiry: 24h\n", 11, ErrValue, "only used by kind tls"},
		{"ca file missing", h + "      kind: tls\n      ca_file: /nonexistent/ca.pem\n", 11, ErrValue, "ca_file"},
		{"kind beside checks", h + "      kind: tcp\n      checks: [{kind: icmp}]\n", 10, ErrValue, "set kind in each check"},
		{"nested checks", h + "      checks:\n        - checks: [{kind: icmp}]\n", 11, ErrValue, "cannot hold checks"},
		{"bad check in list", h + "      checks:\n        - {kind: icmp}\n        - {kind: dns}\n", 12, ErrMissing, "needs a query"},
		{"empty checks", h + "      checks: []\n", 10, ErrMissing, "checks is empty"},
		{"backend health", strings.Replace(base, "      - address: 198.18.0.11\n",
			"      - address: 198.18.0.11\n        health: {kind: smtp, payload: x}\n", 1), 9, ErrValue, "only used by kind udp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tt.yaml))
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("%v, want ConfigErrors for:\n%s", err, tt.yaml)
			}
			for _, fe := range ce {
				if errors.Is(fe, tt.reason) && strings.Contains(fe.Error(), tt.text) {
					if fe.Line != tt.line {
						t.Errorf("line %d, want %d: %v", fe.Line, tt.line, fe)
					}
					return
				}
			}
			t.Fatalf("no %v error with %q in:\n%v", tt.reason, tt.text, err)
		})
	}
}

// TestHealthChecksInherit: each check of a list takes the block's timing unless it sets
// its own, and a backend's own block takes the service's.
func TestHealthChecksInherit(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte(testCA), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("test.yaml", []byte(strings.Replace(base, "      - address: 198.18.0.11\n", `      - address: 198.18.0.11
      - address: 198.18.0.12
        health: {kind: smtp, fall: 5}
`, 1)+`    health:
      interval: 3s
      rise: 4
      checks:
        - {kind: tls, server_name: www.test, ca_file: `+ca+`, path: /ready}
        - {kind: dns, query: www.test, timeout: 200ms}
        - {kind: exec, command: ["check {address}:{port}"], shell: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := &cfg.Services[0]
	cs := s.Health.Checkers()
	if len(cs) != 3 || cs[0].Kind != HealthTLS || cs[1].Kind != HealthDNS || cs[2].Kind != HealthExec {
		t.Fatalf("checks %+v", cs)
	}
	for i, c := range cs {
		wantTimeout := DefaultTimeout
		if i == 1 {
			wantTimeout = 200 * time.Millisecond
		}
		if c.Interval != 3*time.Second || c.Rise != 4 || c.Fall != DefaultFall || c.Timeout != wantTimeout {
			t.Errorf("check %d timing %v %v %d %d", i, c.Interval, c.Timeout, c.Rise, c.Fall)
		}
	}
	if cs[0].ExpectStatus != DefaultExpectStatus {
		t.Errorf("tls with a path: expect_status %d", cs[0].ExpectStatus)
	}
	if pool, err := cs[0].CertPool(); err != nil || pool == nil {
		t.Errorf("ca_file: %v", err)
	}
	b := &s.Backends[1]
	if hb := s.HealthOf(b); hb.Kind != HealthSMTP || hb.Fall != 5 || hb.Interval != 3*time.Second || hb.Rise != 4 {
		t.Errorf("backend health %+v", hb)
	}
	if s.HealthOf(&s.Backends[0]) != &s.Health {
		t.Error("first backend does not use the service's block")
	}
	if got := strings.Join(cs[2].ExecCommand(b.Address, s.HealthPort(cs[2], b)), " "); got != "/bin/sh -c check 198.18.0.12:80" {
		t.Errorf("command %q", got)
	}
}

// testCA is a self-signed certificate (PEM), only parsed.
const testCA = `-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw
DgYDVQQKEwdBY21lIENvMB4XDTE3MTAyMDE5NDMwNloXDTE4MTAyMDE5NDMwNlow
EjEQMA4GA1UEChMHQWNtZSBDbzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD0d
7VNhbWvZLWPuj/RtHFjvtJBEwOkhbN/BnnE8rnZR8+sbwnc/KhCk3FhnpHZnQz7B
5aETbbIgmuvewdjvSBSjYzBhMA4GA1UdDwEB/wQEAwICpDATBgNVHSUEDDAKBggr
BgEFBQcDATAPBgNVHRMBAf8EBTADAQH/MCkGA1UdEQQiMCCCDmxvY2FsaG9zdDo1
NDUzgg4xMjcuMC4wLjE6NTQ1MzAKBggqhkjOPQQDAgNIADBFAiEA2zpJEPQyz6/l
Wf86aX6PepsntZv2GYlA5UpabfT2EZICICpJ5h/iI+i341gBmLiAFQOyTDT+/wQc
6MF9+Yw1Yy0t
-----END CERTIFICATE-----
`
