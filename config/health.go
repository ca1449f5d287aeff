package config

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/health"
)

// Health configures the checks of a service's backends (or, as Backend.Health, of one
// backend). It is one check (Kind and the kind's fields) or, with Checks, several: a backend
// is then up only when every check passes (keepalived's several checkers per real server).
type Health struct {
	// Kind is icmp, tcp, http, https, tls, udp, dns, smtp, exec or none. Default tcp (unset
	// when Checks is used).
	Kind HealthKind `yaml:"kind"`
	// Port is the checked port. Default: the backend's NAT port, else the
	// service port (required when the service port is 0 and the kind
	// needs a port).
	Port uint16 `yaml:"port"`
	// Path is the HTTP(S) path. Default "/". With kind tls, a path makes the check send
	// the HTTP GET over the TLS connection.
	Path string `yaml:"path"`
	// Host is the HTTP(S) Host header. Default: the backend address.
	Host string `yaml:"host"`
	// ExpectStatus is the HTTP(S) status that counts as a success.
	// Default 200.
	ExpectStatus int `yaml:"expect_status"`
	// ExpectBody, when set, must occur in the HTTP(S) response body.
	ExpectBody string `yaml:"expect_body"`
	// InsecureSkipVerify skips certificate verification for https and tls.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName is the TLS server name (SNI) of https and tls checks, and the name the
	// certificate must carry. Default for https: Host; for tls: none (the certificate must
	// then carry the backend's address).
	ServerName string `yaml:"server_name"`
	// CAFile is a PEM file of the authorities that sign the backends' certificates
	// (https, tls). Default: the system's.
	CAFile string `yaml:"ca_file"`
	// MinExpiry fails a tls check whose certificate expires sooner (0: not checked).
	MinExpiry time.Duration `yaml:"min_expiry"`

	// Command is an exec check's program and arguments, run without a shell; "{address}"
	// and "{port}" in them become the backend's address and health port.
	Command []string `yaml:"command"`
	// Shell runs Command, then one string, with /bin/sh -c.
	Shell bool `yaml:"shell"`
	// User runs the program as this user (name or uid). Default: xlb's own.
	User string `yaml:"user"`
	// Env adds NAME=value pairs to the program's minimal environment.
	Env []string `yaml:"env"`
	// DynamicWeight makes exit statuses 2-255 healthy with the weight status-2
	// (keepalived's misc_dynamic).
	DynamicWeight bool `yaml:"dynamic_weight"`

	// Payload is the datagram a udp check sends.
	Payload string `yaml:"payload"`
	// Expect, when set, must occur in the udp reply.
	Expect string `yaml:"expect"`

	// Query is the name a dns check asks for (required for dns).
	Query string `yaml:"query"`
	// QueryType is its type: A, AAAA, MX, SOA, ... Default A.
	QueryType string `yaml:"query_type"`
	// ExpectRcode is the response code that counts as a success. Default NOERROR.
	ExpectRcode string `yaml:"expect_rcode"`
	// ExpectAnswers must each be the data of an answer record ("198.18.0.10").
	ExpectAnswers []string `yaml:"expect_answers"`

	// Helo is the name an smtp check sends with EHLO. Default xlb-health.
	Helo string `yaml:"helo"`

	Interval time.Duration `yaml:"interval"` // default 2s
	Timeout  time.Duration `yaml:"timeout"`  // default 1s, at most Interval
	Rise     int           `yaml:"rise"`     // successes to come up, default 2
	Fall     int           `yaml:"fall"`     // failures to go down, default 3
	// ThroughVIP sends a dr or tunnel backend's check to the VIP along the path the
	// data path forwards on (a firewall mark and a route "VIP via BACKEND
	// onlink" in a table of its own), so a backend that lost its VIP on lo
	// fails it. Method dr, or tunnel over IPv4 with a single tunnel_source:
	// the probe then leaves in the service's encapsulation (ipip, gue, fou),
	// so a backend that stopped decapsulating fails it too.
	ThroughVIP bool `yaml:"through_vip"`

	// Checks are several checks, each a Health block of its own (without Checks) whose
	// unset interval, timeout, rise and fall are this block's. The backend is up only when
	// all of them pass.
	Checks []Health `yaml:"checks"`

	pos pos
}

// kindFields are the fields only some kinds use.
var kindFields = map[string][]HealthKind{
	"path":                 {HealthHTTP, HealthHTTPS, HealthTLS},
	"host":                 {HealthHTTP, HealthHTTPS, HealthTLS},
	"expect_status":        {HealthHTTP, HealthHTTPS, HealthTLS},
	"expect_body":          {HealthHTTP, HealthHTTPS, HealthTLS},
	"insecure_skip_verify": {HealthHTTP, HealthHTTPS, HealthTLS},
	"server_name":          {HealthHTTPS, HealthTLS},
	"ca_file":              {HealthHTTPS, HealthTLS},
	"min_expiry":           {HealthTLS},
	"command":              {HealthExec},
	"shell":                {HealthExec},
	"user":                 {HealthExec},
	"env":                  {HealthExec},
	"dynamic_weight":       {HealthExec},
	"payload":              {HealthUDP},
	"expect":               {HealthUDP},
	"query":                {HealthDNS},
	"query_type":           {HealthDNS},
	"expect_rcode":         {HealthDNS},
	"expect_answers":       {HealthDNS},
	"helo":                 {HealthSMTP},
}

// Checkers returns the single checks of h: h itself, or its Checks.
func (h *Health) Checkers() []*Health {
	if len(h.Checks) == 0 {
		return []*Health{h}
	}
	out := make([]*Health, len(h.Checks))
	for i := range h.Checks {
		out[i] = &h.Checks[i]
	}
	return out
}

// AnyThroughVIP reports whether any check of h goes through the VIP (through_vip).
func (h *Health) AnyThroughVIP() bool {
	for _, c := range h.Checkers() {
		if c.ThroughVIP {
			return true
		}
	}
	return false
}

// HealthOf returns the health block that checks backend b: its own, or the service's.
func (s *Service) HealthOf(b *Backend) *Health {
	if b.Health != nil {
		return b.Health
	}
	return &s.Health
}

// HealthPort is the port check h probes on backend b.
func (s *Service) HealthPort(h *Health, b *Backend) uint16 {
	if h.Port != 0 {
		return h.Port
	}
	return s.TargetPort(b)
}

// normalize fills h's unset fields: from parent (the enclosing block) for the timing, from
// the defaults otherwise.
func (h *Health) normalize(parent *Health) {
	if len(h.Checks) == 0 {
		h.Kind = orDefault(h.Kind, DefaultHealthKind)
	}
	if h.Kind.Web() {
		h.Path = orDefault(h.Path, DefaultHealthPath)
	}
	if h.Kind.Web() || (h.Kind == HealthTLS && h.Path != "") {
		if h.ExpectStatus == 0 && !h.pos.has("expect_status") {
			h.ExpectStatus = DefaultExpectStatus
		}
	}
	interval, timeout, rise, fall := DefaultInterval, DefaultTimeout, DefaultRise, DefaultFall
	if parent != nil {
		interval, timeout, rise, fall = parent.Interval, parent.Timeout, parent.Rise, parent.Fall
	}
	// A zero written in the file stays, so Validate refuses it; an
	// absent field gets its default.
	if h.Interval == 0 && !h.pos.has("interval") {
		h.Interval = interval
	}
	if h.Timeout == 0 && !h.pos.has("timeout") {
		h.Timeout = timeout
		if h.Interval > 0 {
			h.Timeout = min(timeout, h.Interval)
		}
	}
	if h.Rise == 0 && !h.pos.has("rise") {
		h.Rise = rise
	}
	if h.Fall == 0 && !h.pos.has("fall") {
		h.Fall = fall
	}
	for i := range h.Checks {
		h.Checks[i].normalize(h)
	}
}

// validateHealth checks the service's health block and its backends' own.
func (s *Service) validateHealth(e *errs, p string, portOK bool) {
	s.Health.validate(e, s, p+".health", s.pos.line, portOK, true)
	for _, group := range []struct {
		field string
		list  []Backend
	}{{"backends", s.Backends}, {"fallback", s.Fallback}} {
		for j := range group.list {
			if b := &group.list[j]; b.Health != nil {
				b.Health.validate(e, s, fmt.Sprintf("%s.%s[%d].health", p, group.field, j), b.pos.line, portOK, true)
			}
		}
	}
}

// validate checks one health block; line is where a block left out reports, top whether
// it may hold Checks.
func (h *Health) validate(e *errs, s *Service, p string, line int, portOK, top bool) {
	hp := h.pos
	if hp.line == 0 {
		hp.line = line
	}
	if len(h.Checks) > 0 {
		switch {
		case !top:
			e.add(hp.at("checks"), p+".checks", ErrValue, "a check in checks cannot hold checks of its own")
		case hp.has("kind") || h.Kind != 0:
			e.add(hp.at("kind"), p+".kind", ErrValue, "with checks, set kind in each check")
		}
		h.validateTiming(e, hp, p)
		for i := range h.Checks {
			h.Checks[i].validate(e, s, fmt.Sprintf("%s.checks[%d]", p, i), hp.at("checks"), portOK, false)
		}
		return
	}
	if hp.has("checks") {
		e.add(hp.at("checks"), p+".checks", ErrMissing, "checks is empty")
	}
	if !valid(e, hp.at("kind"), p+".kind", h.Kind) {
		return
	}
	h.validateTiming(e, hp, p)
	if h.ThroughVIP {
		switch {
		case s.Method == MethodTunnel:
			if !s.VIP.Is4() || !s.TunnelSource.Addr().Is4() || !s.TunnelSource.IsSingleIP() {
				e.add(hp.at("through_vip"), p+".through_vip", ErrValue,
					"through_vip with method tunnel needs an IPv4 vip and a single IPv4 tunnel_source (the probe's outer source)")
			}
		case s.Method != MethodDR:
			e.add(hp.at("through_vip"), p+".through_vip", ErrValue,
				"through_vip needs method dr or tunnel (a kernel route can send a probe to the backend's MAC, but cannot reproduce %s's rewrite)", s.Method)
		case h.Kind == HealthNone:
			e.add(hp.at("through_vip"), p+".through_vip", ErrValue, "kind none runs no check")
		case h.Kind == HealthExec:
			e.add(hp.at("through_vip"), p+".through_vip", ErrValue, "kind exec sends no probe of its own")
		}
	}
	needsPort := h.Kind.UsesPort()
	if needsPort && portOK && h.Port == 0 && s.Port == 0 {
		e.add(hp.at("port"), p+".port", ErrMissing, "a %s check of an all-ports service needs health.port", h.Kind)
	}
	if !needsPort && h.Port != 0 {
		e.add(hp.at("port"), p+".port", ErrValue, "kind %s uses no port", h.Kind)
	}
	for f, kinds := range kindFields {
		if hp.has(f) && !slices.Contains(kinds, h.Kind) {
			names := make([]string, len(kinds))
			for i, k := range kinds {
				names[i] = k.String()
			}
			e.add(hp.at(f), p+"."+f, ErrValue, "only used by kind %s", strings.Join(names, ", "))
		}
	}
	h.validateKind(e, hp, p)
}

func (h *Health) validateTiming(e *errs, hp pos, p string) {
	if h.Interval <= 0 {
		e.add(hp.at("interval"), p+".interval", ErrValue, "interval must be positive")
	}
	if h.Timeout <= 0 {
		e.add(hp.at("timeout"), p+".timeout", ErrValue, "timeout must be positive")
	} else if h.Interval > 0 && h.Timeout > h.Interval {
		e.add(hp.at("timeout"), p+".timeout", ErrValue, "timeout %s is longer than interval %s", h.Timeout, h.Interval)
	}
	if h.Rise < 1 {
		e.add(hp.at("rise"), p+".rise", ErrValue, "rise must be >= 1")
	}
	if h.Fall < 1 {
		e.add(hp.at("fall"), p+".fall", ErrValue, "fall must be >= 1")
	}
}

// validateKind checks the fields of h's kind.
func (h *Health) validateKind(e *errs, hp pos, p string) {
	if h.Kind.Web() || (h.Kind == HealthTLS && h.Path != "") {
		if !strings.HasPrefix(h.Path, "/") {
			e.add(hp.at("path"), p+".path", ErrValue, "path %q must start with /", h.Path)
		}
		if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
			e.add(hp.at("expect_status"), p+".expect_status", ErrValue, "expect_status %d is not an HTTP status", h.ExpectStatus)
		}
	}
	if h.MinExpiry < 0 {
		e.add(hp.at("min_expiry"), p+".min_expiry", ErrValue, "min_expiry must not be negative")
	}
	if h.CAFile != "" {
		if _, err := h.CertPool(); err != nil {
			e.add(hp.at("ca_file"), p+".ca_file", ErrValue, "%v", err)
		}
	}
	switch h.Kind {
	case HealthExec:
		switch {
		case len(h.Command) == 0 || h.Command[0] == "":
			e.add(hp.at("command"), p+".command", ErrMissing, "kind exec needs a command")
		case h.Shell && len(h.Command) != 1:
			e.add(hp.at("command"), p+".command", ErrValue, "with shell, command is one string (the script)")
		}
		if err := health.CheckUser(h.User); err != nil {
			e.add(hp.at("user"), p+".user", ErrValue, "%v", err)
		}
		for _, kv := range h.Env {
			if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
				e.add(hp.at("env"), p+".env", ErrValue, "%q is not NAME=value", kv)
			}
		}
	case HealthDNS:
		if h.Query == "" {
			e.add(hp.at("query"), p+".query", ErrMissing, "kind dns needs a query (the name to ask for)")
		}
		if h.QueryType != "" {
			if _, err := health.ParseDNSType(h.QueryType); err != nil {
				e.add(hp.at("query_type"), p+".query_type", ErrValue, "%q is not a DNS type (A, AAAA, MX, SOA, ...)", h.QueryType)
			}
		}
		if h.ExpectRcode != "" {
			if _, err := health.ParseDNSRcode(h.ExpectRcode); err != nil {
				e.add(hp.at("expect_rcode"), p+".expect_rcode", ErrValue, "%q is not a DNS rcode (NOERROR, NXDOMAIN, ...)", h.ExpectRcode)
			}
		}
	}
}

// CertPool reads CAFile; nil (the system's pool) when it is unset.
func (h *Health) CertPool() (*x509.CertPool, error) {
	if h.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", h.CAFile)
	}
	return pool, nil
}

// ExecCommand is h's command for backend b with port: the placeholders substituted, and
// wrapped in /bin/sh -c when Shell is set.
func (h *Health) ExecCommand(b netip.Addr, port uint16) []string {
	r := strings.NewReplacer("{address}", b.String(), "{port}", fmt.Sprint(port))
	out := make([]string, 0, len(h.Command)+2)
	if h.Shell {
		out = append(out, "/bin/sh", "-c")
	}
	for _, a := range h.Command {
		out = append(out, r.Replace(a))
	}
	return out
}

// Describe is a text that changes whenever h's own check would (its Checks left out): two
// blocks with the same description run the same probe.
func (h *Health) Describe() string {
	v := *h
	v.pos, v.Checks = pos{}, nil
	return fmt.Sprintf("%+v", v)
}
