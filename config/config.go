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
	// Sync, when set, shares connection-table entries with the other LB hosts
	// (see Sync).
	Sync *Sync `yaml:"sync"`
	// HashKey is the secret of the flow hash that picks a new flow's
	// backend (schedulers maglev, flow-hash, source-hash): 32 hex digits
	// (128 bits), the same on every LB host of a cluster (both hosts of a
	// VRRP pair, every ECMP member), so a flow finds the same backend
	// whichever host it reaches. Unset means sched.DefaultHashKeyHex, which
	// is public, so anyone can compute which backend a 5-tuple gets: the
	// controller logs a warning. Generate one with `openssl rand -hex 16`.
	HashKey sched.HashKey `yaml:"hash_key"`
	// VRRPInstances are more virtual routers (each its VRID, interface and
	// VIPs), VRRPScripts the programs their track_scripts run, and
	// VRRPSyncGroups the instances that change state together (see
	// docs/keepalived.md).
	VRRPInstances  []VRRP          `yaml:"vrrp_instances"`
	VRRPScripts    []VRRPScript    `yaml:"vrrp_scripts"`
	VRRPSyncGroups []VRRPSyncGroup `yaml:"vrrp_sync_groups"`
	// ConnTable sizes the connection and persistence tables and sets the
	// idle timeouts (ipvsadm --set).
	ConnTable ConnTable `yaml:"conn_table"`

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
	// Encap is the tunnel method's encapsulation: ipip (default), gue or fou
	// (see Encap); EncapPort is gue's and fou's UDP port (default 6080).
	Encap     Encap  `yaml:"encap"`
	EncapPort uint16 `yaml:"encap_port"`
	// QUIC, for a udp service, routes QUIC packets by the server ID in their
	// connection ID to the backend with that server_id (see QUIC).
	QUIC     *QUIC     `yaml:"quic"`
	Backends []Backend `yaml:"backends"`
	// Fallback backends receive the service's new flows only while every
	// backend in Backends is down (or disabled). They are health-checked
	// like the others. Optional.
	Fallback []Backend `yaml:"fallback"`
	Health   Health    `yaml:"health"`
	// ACL filters the service's sources in the XDP program. Optional.
	ACL ACL `yaml:"acl"`
	// Limits bound the service's new flows in the XDP program. Optional.
	Limits Limits `yaml:"limits"`
	// TableShare is the percentage (1-100) of each worker's connection table the
	// service's flows may hold. A service at its share makes room for a new flow only
	// among its own entries, so a flood against it cannot evict another service's
	// flows; a new flow that finds none is forwarded without an entry (counted as
	// conn_over_quota). Default: 100 with one service, DefaultTableShare with several.
	TableShare int `yaml:"table_share"`
	// VIPs and Ports make the service a group (keepalived's
	// virtual_server_group): it listens on every VIP with every port or
	// range ("443", "8000-8099"), one set of backends, one connection
	// table, one persistence. They replace vip and port (the first VIP
	// and port stand for the service where one is shown).
	VIPs  []netip.Addr `yaml:"vips"`
	Ports []PortRange  `yaml:"ports"`
	// Persistence, when set, keeps each client on one backend (see
	// Persistence).
	Persistence *Persistence `yaml:"persistence"`
	// OnePacket (udp only) schedules every datagram on its own and keeps no
	// connection-table entry (IPVS -o), for independent requests (DNS).
	OnePacket bool `yaml:"one_packet"`
	// SlowStart ramps the share of new flows of a backend that comes back
	// up, is added or is enabled again, from little to its full weight over
	// this time (every scheduler). Default 0: off.
	SlowStart time.Duration `yaml:"slow_start"`

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
	// ServerID is the backend's QUIC-LB server ID (service quic), in hex,
	// quic.server_id_len bytes. Optional: a backend without one gets QUIC
	// flows by the 4-tuple only.
	ServerID HexBytes `yaml:"server_id"`
	// UpperThreshold, when set, stops new flows to the backend while it
	// holds that many connections (IPVS's upper threshold); it gets new
	// flows again below LowerThreshold (default: 3/4 of the upper).
	UpperThreshold uint32 `yaml:"upper_threshold"`
	LowerThreshold uint32 `yaml:"lower_threshold"`

	// Health, when set, checks this backend instead of the service's
	// health block; its unset interval, timeout, rise and fall are the
	// service's.
	Health *Health `yaml:"health"`

	pos pos
}

// Equal reports whether two health sections check the same way, wherever
// in their files they are.
func (h Health) Equal(o Health) bool {
	if len(h.Checks) != len(o.Checks) {
		return false
	}
	for i := range h.Checks {
		if !h.Checks[i].Equal(o.Checks[i]) {
			return false
		}
	}
	h.pos, o.pos = pos{}, pos{}
	h.Checks, o.Checks = nil, nil
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
	// DefaultTableShare is a service's share (percent) of the connection table when
	// there are several services.
	DefaultTableShare = 50
	MaxWeight         = 65535
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
		s.normalizeEncapQUIC()
		s.normalizeGroup()
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
		if s.TableShare == 0 && !s.pos.has("table_share") {
			s.TableShare = 100
			if len(c.Services) > 1 {
				s.TableShare = DefaultTableShare
			}
		}
		s.Health.normalize(nil)
		for _, list := range [][]Backend{s.Backends, s.Fallback} {
			for j := range list {
				if list[j].Health != nil {
					list[j].Health.normalize(&s.Health)
				}
			}
		}
	}
	c.API.Listen = orDefault(c.API.Listen, DefaultAPIListen)
	c.API.Socket = orDefault(c.API.Socket, DefaultAPISocket)
	c.BGP.normalize()
	c.normalizeVRRPTracking()
	c.Sync.normalize()
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

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}
