package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// Config is the whole xlb configuration: the interfaces the workers serve,
// the services and their backends, and the API listener. Its YAML names are
// part of the interface (docs/config.md): they are extended, never renamed.
//
// A Config read by [Parse] or [Load] has its defaults filled and remembers
// the file and line of every field, so [Config.Validate] reports
// "file:line: path: reason". A Config built in Go has no lines; whoever takes
// one (control.New, xlb.New) calls [Config.Normalize] (fills defaults) and
// Validate.
type Config struct {
	Interfaces []Interface `yaml:"interfaces"`
	Services   []Service   `yaml:"services"`
	API        API         `yaml:"api"`
	// BGP, when set, announces the VIPs to routers (see BGP).
	BGP *BGP `yaml:"bgp"`
	// VRRP, when set, shares the VIPs with standby hosts: only the VRRP
	// master forwards (see VRRP).
	VRRP *VRRP `yaml:"vrrp"`

	file   string
	pos    pos
	failed map[string]bool // paths that did not decode: no further checks on them
	lines  map[string]int  // lines of prefix list items (path -> line), for messages
}

// Interface is one network interface whose every queue gets a pinned worker.
type Interface struct {
	Name string `yaml:"name"`
	// XDPMode is auto (native, falling back to generic), native or generic.
	// Default auto.
	XDPMode XDPMode `yaml:"xdp_mode"`
	// ZeroCopy is auto (zero-copy, falling back to copy), on or off.
	// Default auto.
	ZeroCopy ZeroCopy `yaml:"zero_copy"`
	// Cores lists the CPUs the workers are pinned to, one per queue in
	// order; empty means the dataplane picks.
	Cores []int `yaml:"cores"`
	// BusyPoll keeps the interface's workers spinning on their rings instead
	// of sleeping when idle: lowest latency, a whole CPU per worker. Only for
	// workers pinned to cores of their own. Default false.
	BusyPoll bool `yaml:"busy_poll"`

	pos pos
}

// Service is one virtual service: a VIP, port and protocol and the backends
// its new flows are spread over.
type Service struct {
	Name string     `yaml:"name"`
	VIP  netip.Addr `yaml:"vip"`
	// Port is the service port; 0 means every port of the VIP (dr and
	// tunnel only, since NAT rewrites the port).
	Port uint16 `yaml:"port"`
	// Protocol is tcp or udp. Default tcp.
	Protocol Protocol `yaml:"protocol"`
	// Method is dr, tunnel or nat. Default dr.
	Method Method `yaml:"method"`
	// Scheduler is maglev, rr, wrr, random, source-hash, least-conn,
	// least-load or flow-hash. Default maglev.
	Scheduler Scheduler `yaml:"scheduler"`
	// TunnelSource is the outer source address of encapsulated packets
	// (tunnel method, required there), or a prefix the source is picked
	// from per flow so the backends' receive hashing spreads flows.
	TunnelSource netip.Prefix `yaml:"tunnel_source"`
	Backends     []Backend    `yaml:"backends"`
	// Fallback backends receive the service's new flows only while every
	// backend in Backends is down (or disabled). They are health-checked
	// like the others. Optional.
	Fallback []Backend `yaml:"fallback"`
	Health   Health    `yaml:"health"`
	// ACL filters the service's sources in the XDP program. Optional.
	ACL ACL `yaml:"acl"`
	// Limits bound the service's new flows in the XDP program. Optional.
	Limits Limits `yaml:"limits"`

	pos pos
}

// Backend is one real server of a service.
type Backend struct {
	// Name identifies the backend in the API and metrics. Default
	// "address" or "address:port" when Port is set.
	Name    string     `yaml:"name"`
	Address netip.Addr `yaml:"address"`
	// Port is the NAT destination port; 0 (the default) keeps the
	// service port. Only meaningful for the nat method.
	Port uint16 `yaml:"port"`
	// Weight is the backend's share of new flows, 0-65535; 0 drains it
	// (no new flows, existing flows stay). Default 100.
	Weight *uint32 `yaml:"weight"`
	// Disabled takes the backend out as if it were down: existing flows
	// are rescheduled. Default false.
	Disabled bool `yaml:"disabled"`
	// UpperThreshold, when set, stops new flows to the backend while it
	// holds that many connections (IPVS's upper threshold); it gets new
	// flows again below LowerThreshold (default: 3/4 of the upper).
	UpperThreshold uint32 `yaml:"upper_threshold"`
	LowerThreshold uint32 `yaml:"lower_threshold"`

	pos pos
}

// Health configures the prober of a service's backends.
type Health struct {
	// Kind is icmp, tcp, http, https or none. Default tcp.
	Kind HealthKind `yaml:"kind"`
	// Port is the checked port. Default: the backend's NAT port, else the
	// service port (required when the service port is 0 and the kind
	// needs a port).
	Port uint16 `yaml:"port"`
	// Path is the HTTP(S) path. Default "/".
	Path string `yaml:"path"`
	// Host is the HTTP(S) Host header. Default: the backend address.
	Host string `yaml:"host"`
	// ExpectStatus is the HTTP(S) status that counts as a success.
	// Default 200.
	ExpectStatus int `yaml:"expect_status"`
	// ExpectBody, when set, must occur in the HTTP(S) response body.
	ExpectBody string `yaml:"expect_body"`
	// InsecureSkipVerify skips certificate verification for https.
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	Interval           time.Duration `yaml:"interval"` // default 2s
	Timeout            time.Duration `yaml:"timeout"`  // default 1s, at most Interval
	Rise               int           `yaml:"rise"`     // successes to come up, default 2
	Fall               int           `yaml:"fall"`     // failures to go down, default 3
	// ThroughVIP sends a dr backend's check to the VIP along the path the
	// data path forwards on (a firewall mark and a route "VIP via BACKEND
	// onlink" in a table of its own), so a backend that lost its VIP on lo
	// fails it. Method dr only.
	ThroughVIP bool `yaml:"through_vip"`

	pos pos
}

// Equal reports whether two health sections check the same way, wherever
// in their files they are.
func (h Health) Equal(o Health) bool {
	h.pos, o.pos = pos{}, pos{}
	return reflect.DeepEqual(h, o)
}

// API configures the HTTP API and /metrics listener.
type API struct {
	// Listen is host:port. Default 127.0.0.1:9440. An empty host or a
	// non-loopback address requires a token.
	Listen string `yaml:"listen"`
	// Token is the bearer token the API requires. TokenFile names a file
	// holding it (trailing white space trimmed); at most one of the two.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Socket is the unix socket `xlb ctl` talks to by default; through it
	// the balancer may be changed by whoever may connect (root, and the
	// group SocketGroup when set). Default /run/xlb/xlb.sock; "none": no
	// socket.
	Socket string `yaml:"socket"`
	// SocketGroup (a name or gid) may use the socket too (mode 0660).
	SocketGroup string `yaml:"socket_group"`
	// TLSCert and TLSKey (PEM files) make the TCP listener speak TLS only.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// ClientCA (a PEM file) requires clients to show a certificate it
	// signed (mutual TLS). Needs tls_cert.
	ClientCA string `yaml:"client_ca"`

	pos pos
}

// LoadToken returns the API token the config names (api.token, or the trimmed
// content of api.token_file), or "".
func (a *API) LoadToken() (string, error) {
	if a.TokenFile == "" {
		return a.Token, nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", fmt.Errorf("api token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("api token file %s: %w: empty", a.TokenFile, ErrValue)
	}
	return t, nil
}

// Defaults, filled by Normalize for every field left unset.
const (
	DefaultXDPMode      = XDPAuto
	DefaultZeroCopy     = ZeroCopyAuto
	DefaultProtocol     = TCP
	DefaultMethod       = MethodDR
	DefaultScheduler    = sched.Maglev
	DefaultWeight       = 100
	DefaultHealthKind   = HealthTCP
	DefaultHealthPath   = "/"
	DefaultExpectStatus = 200
	DefaultInterval     = 2 * time.Second
	DefaultTimeout      = time.Second
	DefaultRise         = 2
	DefaultFall         = 3
	DefaultAPIListen    = "127.0.0.1:9440"
	DefaultAPISocket    = "/run/xlb/xlb.sock"
	MaxWeight           = 65535
)

// File is the path the config was loaded from ("" when built in Go).
func (c *Config) File() string { return c.file }

// Normalize fills every unset field with its default. Parsing calls it;
// call it yourself on a Config built in Go.
func (c *Config) Normalize() {
	for i := range c.Interfaces {
		in := &c.Interfaces[i]
		in.XDPMode = orDefault(in.XDPMode, DefaultXDPMode)
		in.ZeroCopy = orDefault(in.ZeroCopy, DefaultZeroCopy)
	}
	for i := range c.Services {
		s := &c.Services[i]
		s.Protocol = orDefault(s.Protocol, DefaultProtocol)
		s.Method = orDefault(s.Method, DefaultMethod)
		for _, list := range [][]Backend{s.Backends, s.Fallback} {
			for j := range list {
				b := &list[j]
				if b.Weight == nil {
					w := uint32(DefaultWeight)
					b.Weight = &w
				}
				if b.Name == "" && b.Address.IsValid() {
					b.Name = b.Address.String()
					if b.Port != 0 {
						b.Name = netip.AddrPortFrom(b.Address, b.Port).String()
					}
				}
			}
		}
		s.Limits.normalize()
		h := &s.Health
		h.Kind = orDefault(h.Kind, DefaultHealthKind)
		if h.Kind.Web() {
			h.Path = orDefault(h.Path, DefaultHealthPath)
			if h.ExpectStatus == 0 && !h.pos.has("expect_status") {
				h.ExpectStatus = DefaultExpectStatus
			}
		}
		// A zero written in the file stays, so Validate refuses it; an
		// absent field gets its default.
		if h.Interval == 0 && !h.pos.has("interval") {
			h.Interval = DefaultInterval
		}
		if h.Timeout == 0 && !h.pos.has("timeout") {
			h.Timeout = DefaultTimeout
			if h.Interval > 0 {
				h.Timeout = min(DefaultTimeout, h.Interval)
			}
		}
		if h.Rise == 0 && !h.pos.has("rise") {
			h.Rise = DefaultRise
		}
		if h.Fall == 0 && !h.pos.has("fall") {
			h.Fall = DefaultFall
		}
	}
	c.API.Listen = orDefault(c.API.Listen, DefaultAPIListen)
	c.API.Socket = orDefault(c.API.Socket, DefaultAPISocket)
	c.BGP.normalize()
}

// WeightOf returns the backend's configured weight (DefaultWeight when unset).
func (b *Backend) WeightOf() uint32 {
	if b.Weight == nil {
		return DefaultWeight
	}
	return *b.Weight
}

// ServiceKey identifies a service: VIP, port and protocol.
type ServiceKey struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
}

func (k ServiceKey) String() string {
	return k.Protocol.String() + "/" + netip.AddrPortFrom(k.VIP, k.Port).String()
}

// Key returns the service's identity.
func (s *Service) Key() ServiceKey { return ServiceKey{s.VIP, s.Port, s.Protocol} }

// TargetPort is the port a backend receives the service's traffic on.
func (s *Service) TargetPort(b *Backend) uint16 {
	if s.Method == MethodNAT && b.Port != 0 {
		return b.Port
	}
	return s.Port
}

// HealthPort is the port the prober checks on backend b.
func (s *Service) HealthPort(b *Backend) uint16 {
	if s.Health.Port != 0 {
		return s.Health.Port
	}
	return s.TargetPort(b)
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}
