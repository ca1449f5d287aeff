package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const base = `interfaces:
  - name: eth0
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - address: 198.18.0.11
`

func TestExampleConfigParses(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Services); got != 3 {
		t.Fatalf("services = %d, want 3", got)
	}
	web := cfg.Services[0]
	if web.Health.Interval != time.Second || web.Health.Timeout != 500*time.Millisecond || web.Health.Rise != 2 {
		t.Errorf("web health = %+v", web.Health)
	}
	if w := web.Backends[2].WeightOf(); w != 0 {
		t.Errorf("spare weight = %d, want 0 (drained)", w)
	}
	if n := web.Backends[2].Name; n != "spare" {
		t.Errorf("name = %q", n)
	}
	dns := cfg.Services[1]
	if dns.Backends[0].Name != "198.18.0.11:5353" || dns.TargetPort(&dns.Backends[0]) != 5353 {
		t.Errorf("dns backend = %+v", dns.Backends[0])
	}
	if cfg.File() != "testdata/example.yaml" {
		t.Errorf("file = %q", cfg.File())
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("d.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	h := s.Health
	checks := []struct {
		name      string
		got, want any
	}{
		{"xdp_mode", cfg.Interfaces[0].XDPMode, DefaultXDPMode},
		{"zero_copy", cfg.Interfaces[0].ZeroCopy, DefaultZeroCopy},
		{"protocol", s.Protocol, DefaultProtocol},
		{"method", s.Method, DefaultMethod},
		{"scheduler", s.Scheduler, DefaultScheduler},
		{"weight", s.Backends[0].WeightOf(), uint32(DefaultWeight)},
		{"name", s.Backends[0].Name, "198.18.0.11"},
		{"kind", h.Kind, DefaultHealthKind},
		{"interval", h.Interval, DefaultInterval},
		{"timeout", h.Timeout, DefaultTimeout},
		{"rise", h.Rise, DefaultRise},
		{"fall", h.Fall, DefaultFall},
		{"listen", cfg.API.Listen, DefaultAPIListen},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestConfigErrors gives one broken config per rule and checks the file,
// line and reason of the error it must produce.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		line   int
		reason error
		text   string
	}{
		{"syntax", "interfaces: [eth0\n", 1, ErrSyntax, ""},
		{"syntax line", "interfaces:\n  - name: eth0\nservices: a: b\n", 3, ErrSyntax, "mapping values"},
		{"empty", "", 1, ErrMissing, "empty"},
		{"two documents", base + "---\n" + base, 9, ErrSyntax, "more than one"},
		{"unknown top field", base + "apis: {}\n", 9, ErrUnknownField, `"apis"`},
		{"unknown service field", strings.Replace(base, "    port: 80\n", "    port: 80\n    prot: tcp\n", 1), 7, ErrUnknownField, "prot"},
		{"duplicate key", strings.Replace(base, "    port: 80\n", "    port: 80\n    port: 81\n", 1), 7, ErrDuplicate, "line 6"},
		{"port not a number", strings.Replace(base, "port: 80", "port: http", 1), 6, ErrType, "integer"},
		{"port too big", strings.Replace(base, "port: 80", "port: 70000", 1), 6, ErrValue, "0..65535"},
		{"services not a list", "interfaces: [{name: eth0}]\nservices: {a: 1}\n", 2, ErrType, "list"},
		{"bad vip", strings.Replace(base, "198.19.0.10", "198.19.0", 1), 5, ErrValue, "not an IP"},
		{"vip with zone", strings.Replace(base, "198.19.0.10", "fe80::1%eth0", 1), 5, ErrValue, "not an IP"},
		{"multicast vip", strings.Replace(base, "198.19.0.10", "224.0.0.1", 1), 5, ErrValue, "unicast"},
		{"missing vip", strings.Replace(base, "    vip: 198.19.0.10\n", "", 1), 4, ErrMissing, "vip"},
		{"bad protocol", strings.Replace(base, "    port: 80\n", "    port: 80\n    protocol: sctp\n", 1), 7, ErrValue, "sctp"},
		{"bad method", strings.Replace(base, "    port: 80\n", "    port: 80\n    method: magic\n", 1), 7, ErrValue, "magic"},
		{"bad scheduler", strings.Replace(base, "    port: 80\n", "    port: 80\n    scheduler: lc\n", 1), 7, ErrValue, `"lc"`},
		{"bad health kind", base + "    health: {kind: gopher}\n", 9, ErrValue, "gopher"},
		{"bad xdp mode", strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n    xdp_mode: fast\n", 1), 3, ErrValue, "fast"},
		{"bad zero copy", strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n    zero_copy: maybe\n", 1), 3, ErrValue, "maybe"},
		{"duplicate core", strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n    cores: [1, 1]\n", 1), 3, ErrDuplicate, "cpu 1"},
		{"no interfaces", strings.Replace(base, "interfaces:\n  - name: eth0\n", "interfaces: []\n", 1), 1, ErrMissing, "interface"},
		{"duplicate interface", strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n  - name: eth0\n", 1), 3, ErrDuplicate, "eth0"},
		{"duplicate service", base + "  - name: web2\n    vip: 198.19.0.10\n    port: 80\n    backends: [{address: 198.18.0.12}]\n", 9, ErrDuplicate, "tcp/198.19.0.10:80"},
		{"duplicate service name", base + "  - name: web\n    vip: 198.19.0.10\n    port: 81\n    backends: [{address: 198.18.0.12}]\n", 9, ErrDuplicate, `"web"`},
		{"bad service name", strings.Replace(base, "name: web", "name: 'we b'", 1), 4, ErrValue, "letters"},
		{"no backends", strings.Replace(base, "    backends:\n      - address: 198.18.0.11\n", "    backends: []\n", 1), 7, ErrMissing, "backend"},
		{"backend address missing", strings.Replace(base, "      - address: 198.18.0.11\n", "      - weight: 3\n", 1), 8, ErrMissing, "address"},
		{"duplicate backend", base + "      - address: 198.18.0.11\n", 9, ErrDuplicate, "198.18.0.11:80"},
		{"weight too big", base + "      - {address: 198.18.0.12, weight: 70000}\n", 9, ErrValue, "weight 70000"},
		{"weight negative", base + "      - {address: 198.18.0.12, weight: -1}\n", 9, ErrValue, "integer"},
		{"weight is text", base + "      - {address: 198.18.0.12, weight: heavy}\n", 9, ErrType, "integer"},
		{"backend port without nat", base + "      - {address: 198.18.0.12, port: 8080}\n", 9, ErrValue, "nat"},
		{"dr family mismatch", base + "      - {address: '2001:db8::1'}\n", 9, ErrValue, "family"},
		{"nat port 0", strings.Replace(strings.Replace(base, "port: 80", "port: 0", 1), "    backends:", "    method: nat\n    health: {kind: icmp}\n    backends:", 1), 6, ErrValue, "port 0"},
		{"tunnel needs source", strings.Replace(base, "    port: 80\n", "    port: 80\n    method: tunnel\n", 1), 7, ErrMissing, "tunnel_source"},
		{"tunnel source without tunnel", strings.Replace(base, "    port: 80\n", "    port: 80\n    tunnel_source: 198.18.0.2\n", 1), 7, ErrValue, "only used by method tunnel"},
		{"tunnel source host bits", strings.Replace(base, "    port: 80\n", "    port: 80\n    method: tunnel\n    tunnel_source: 198.18.0.2/24\n", 1), 8, ErrValue, "host bits"},
		{"tunnel family mismatch", strings.Replace(base, "    port: 80\n", "    port: 80\n    method: tunnel\n    tunnel_source: '2001:db8::2'\n", 1), 10, ErrValue, "families"},
		{"nat backend in two services", `interfaces: [{name: eth0}]
services:
  - {name: a, vip: 198.19.0.10, port: 80, method: nat, backends: [{address: 198.18.0.11, port: 8080}]}
  - {name: b, vip: 198.19.0.11, port: 80, method: nat, backends: [{address: 198.18.0.11, port: 8080}]}
`, 4, ErrDuplicate, "already used by service \"a\""},
		{"bad duration", base + "    health: {interval: soon}\n", 9, ErrValue, "duration"},
		{"duration without unit", base + "    health: {interval: 5}\n", 9, ErrValue, "duration"},
		{"zero interval", base + "    health:\n      interval: 0s\n", 10, ErrValue, "interval must be positive"},
		{"timeout above interval", base + "    health:\n      interval: 1s\n      timeout: 2s\n", 11, ErrValue, "longer than interval"},
		{"rise zero", base + "    health:\n      rise: 0\n", 10, ErrValue, "rise must be >= 1"},
		{"fall negative", base + "    health:\n      fall: -2\n", 10, ErrValue, "fall must be >= 1"},
		{"port missing", strings.Replace(base, "    port: 80\n", "", 1), 4, ErrMissing, "port is required"},
		{"health port for all-ports", strings.Replace(base, "port: 80", "port: 0", 1), 4, ErrMissing, "health.port"},
		{"icmp with port", base + "    health: {kind: icmp, port: 80}\n", 9, ErrValue, "uses no port"},
		{"http path", base + "    health:\n      kind: http\n      path: healthz\n", 11, ErrValue, "must start with /"},
		{"http status", base + "    health:\n      kind: http\n      expect_status: 42\n", 11, ErrValue, "not an HTTP status"},
		{"path for tcp", base + "    health:\n      path: /x\n", 10, ErrValue, "only used by kind http"},
		{"bool is text", base + "    health: {kind: https, insecure_skip_verify: yes}\n", 9, ErrType, "true or false"},
		{"bad api listen", base + "api: {listen: nowhere}\n", 9, ErrValue, "host:port"},
		{"api beyond loopback", base + "api: {listen: '0.0.0.0:9440'}\n", 9, ErrMissing, "token"},
		{"api token and file", base + "api: {listen: '127.0.0.1:1', token: a, token_file: /b}\n", 9, ErrValue, "not both"},
		{"merge key", base + "api: {<<: {listen: x}}\n", 9, ErrUnknownField, "merge"},
		{"alias bomb", aliasBomb(), 0, ErrTooBig, "nodes"},
		{"too many errors", strings.Repeat("x: 1\n", 300), 0, ErrTooBig, "more errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.yaml)
			}
			if !errors.Is(err, tt.reason) {
				t.Fatalf("error %q does not wrap %v", err, tt.reason)
			}
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not ConfigErrors", err)
			}
			var hit *FieldError
			for _, fe := range ce {
				if errors.Is(fe, tt.reason) && strings.Contains(fe.Error(), tt.text) {
					hit = fe
					break
				}
			}
			if hit == nil {
				t.Fatalf("no %v error containing %q in:\n%v", tt.reason, tt.text, err)
			}
			if hit.File != "test.yaml" {
				t.Errorf("file = %q", hit.File)
			}
			if tt.line != 0 && hit.Line != tt.line {
				t.Errorf("line = %d, want %d: %v", hit.Line, tt.line, hit)
			}
			if tt.line != 0 && !strings.HasPrefix(hit.Error(), "test.yaml:") {
				t.Errorf("message lacks file:line: %q", hit.Error())
			}
		})
	}
}

// aliasBomb returns a small document whose aliases expand to far more
// nodes than maxNodes.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("x: &b [")
	for i := range 300 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{address: 198.18.%d.%d}", i/200, 1+i%200)
	}
	b.WriteString("]\ninterfaces: [{name: eth0}]\nservices: [&s {name: a, vip: 198.19.0.1, port: 80, backends: *b}")
	for range 1000 {
		b.WriteString(", *s")
	}
	b.WriteString("]\n")
	return b.String()
}

// TestValidateReportsAll checks that Validate returns every error, in
// line order, not only the first.
func TestValidateReportsAll(t *testing.T) {
	y := `interfaces: [{name: eth0, xdp_mode: fast}]
services:
  - name: a
    vip: 198.19.0.10
    port: 80
    method: nat
    scheduler: nope
    backends: [{address: 198.18.0.11, weight: 99999}]
    health: {rise: 0}
`
	_, err := Parse("all.yaml", []byte(y))
	var ce ConfigErrors
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	want := []int{1, 7, 8, 9}
	if len(ce) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(ce), len(want), err)
	}
	for i, fe := range ce {
		if fe.Line != want[i] {
			t.Errorf("error %d on line %d, want %d: %v", i, fe.Line, want[i], fe)
		}
	}
}

// TestValidateGoConfig covers a Config built in Go: no lines, still every
// rule.
func TestValidateGoConfig(t *testing.T) {
	cfg, err := Parse("", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Interfaces: cfg.Interfaces, Services: []Service{cfg.Services[0], cfg.Services[0]}}
	c.Normalize()
	err = c.Validate()
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("err = %v, want duplicate", err)
	}
	if strings.Contains(err.Error(), ":0:") {
		t.Errorf("line 0 printed: %v", err)
	}
}

func TestConfigErrorMessage(t *testing.T) {
	_, err := Parse("/etc/xlb.yaml", []byte(strings.Replace(base, "port: 80", "port: http", 1)))
	want := `/etc/xlb.yaml:6: services[0].port: bad type: want an integer 0..65535, got "http"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte(base))
	f.Add([]byte(groupYAML))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte(aliasBomb()))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) == 0 {
				t.Fatalf("error %T %v is not a non-empty ConfigErrors", err, err)
			}
			return
		}
		// A config that parsed validates again, unchanged.
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config fails Validate: %v", err)
		}
	})
}
