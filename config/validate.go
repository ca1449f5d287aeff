package config

import (
	"encoding"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// nameRE is what service and backend names may hold: they appear in API
// paths and metric labels.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$`)

// Validate checks the whole configuration and returns every problem found
// (a ConfigErrors), not only the first. Call Normalize first on a Config
// built in Go.
func (c *Config) Validate() error {
	e := &errs{file: c.file}
	c.validateInterfaces(e)
	c.validateServices(e)
	c.validateFrontends(e)
	c.validateConnTable(e)
	c.validateACLTotal(e)
	c.API.validate(e)
	c.validateBGP(e)
	c.validateVRRP(e)
	c.validateSync(e)
	slices.SortStableFunc(e.list, func(a, b *FieldError) int { return a.Line - b.Line })
	return e.err()
}

func (c *Config) validateInterfaces(e *errs) {
	if len(c.Interfaces) == 0 {
		e.add(c.pos.at("interfaces"), "interfaces", ErrMissing, "at least one interface is required")
	}
	seen := map[string]int{}
	for i := range c.Interfaces {
		in := &c.Interfaces[i]
		p := fmt.Sprintf("interfaces[%d]", i)
		switch {
		case in.Name == "":
			e.add(in.pos.line, p+".name", ErrMissing, "name is required")
		case len(in.Name) > 15 || strings.ContainsAny(in.Name, "/ \t\n"):
			e.add(in.pos.at("name"), p+".name", ErrValue, "%q is not an interface name", in.Name)
		default:
			if prev, dup := seen[in.Name]; dup {
				e.add(in.pos.at("name"), p+".name", ErrDuplicate, "interface %q already listed on line %d", in.Name, prev)
			}
			seen[in.Name] = in.pos.at("name")
		}
		valid(e, in.pos.at("xdp_mode"), p+".xdp_mode", in.XDPMode)
		valid(e, in.pos.at("zero_copy"), p+".zero_copy", in.ZeroCopy)
		cores := map[int]bool{}
		for _, cpu := range in.Cores {
			if cpu < 0 || cpu > 4095 {
				e.add(in.pos.at("cores"), p+".cores", ErrValue, "cpu %d out of range 0..4095", cpu)
			} else if cores[cpu] {
				e.add(in.pos.at("cores"), p+".cores", ErrDuplicate, "cpu %d listed twice", cpu)
			}
			cores[cpu] = true
		}
	}
}

// natTarget is a NAT backend's identity: its replies are mapped back to
// exactly one service.
type natTarget struct {
	addr  netip.Addr
	port  uint16
	proto Protocol
}

func (c *Config) validateServices(e *errs) {
	names := map[string]int{}
	keys := map[ServiceKey]int{}
	nat := map[natTarget]string{}
	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		switch {
		case s.Name == "":
			e.add(s.pos.line, p+".name", ErrMissing, "name is required")
		case !nameRE.MatchString(s.Name):
			e.add(s.pos.at("name"), p+".name", ErrValue, "%q: use letters, digits, '.', '_', ':' or '-' (at most 63)", s.Name)
		default:
			if prev, dup := names[s.Name]; dup {
				e.add(s.pos.at("name"), p+".name", ErrDuplicate, "service name %q already used on line %d", s.Name, prev)
			}
			names[s.Name] = s.pos.at("name")
		}
		vipOK := checkAddr(e, s.pos, "vip", p, s.VIP)
		protoOK := valid(e, s.pos.at("protocol"), p+".protocol", s.Protocol)
		methodOK := valid(e, s.pos.at("method"), p+".method", s.Method)
		valid(e, s.pos.at("scheduler"), p+".scheduler", s.Scheduler)
		if vipOK && protoOK {
			k := s.Key()
			if prev, dup := keys[k]; dup {
				e.add(s.pos.line, p, ErrDuplicate, "service %s already defined on line %d", k, prev)
			}
			keys[k] = s.pos.line
		}
		portOK := !c.failed[p+".port"]
		s.validateGroup(e, p)
		if portOK && s.pos.line > 0 && !s.pos.has("port") && !s.pos.has("ports") {
			// Read from a file: an absent port must not silently mean
			// "all ports".
			e.add(s.pos.line, p+".port", ErrMissing, "port is required (0 means all ports), or ports")
			portOK = false
		}
		if methodOK && portOK && s.Port == 0 && s.Method == MethodNAT {
			e.add(s.pos.at("port"), p+".port", ErrValue, "port 0 (all ports) is only allowed with method dr or tunnel")
		}
		switch {
		case s.Method == MethodTunnel && !s.TunnelSource.IsValid():
			e.add(s.pos.at("method"), p+".tunnel_source", ErrMissing, "tunnel_source is required for method tunnel")
		case s.Method != MethodTunnel && s.TunnelSource.IsValid() && methodOK:
			e.add(s.pos.at("tunnel_source"), p+".tunnel_source", ErrValue, "tunnel_source is only used by method tunnel")
		case s.TunnelSource.IsValid() && !usableUnicast(s.TunnelSource.Addr()):
			e.add(s.pos.at("tunnel_source"), p+".tunnel_source", ErrValue, "%s is not a unicast address", s.TunnelSource)
		}
		s.validateEncapQUIC(e, p, methodOK)
		if len(s.Backends) == 0 {
			e.add(s.pos.at("backends"), p+".backends", ErrMissing, "at least one backend is required")
		}
		c.validateDefence(e, s, p)
		c.validateBackends(e, s, p, vipOK && methodOK, protoOK, nat)
		s.validateHealth(e, p, portOK)
	}
}

// validateBackends checks the backends and fallbacks of service s (at path
// p): each one, and that names and targets are unique in the service and a
// NAT target belongs to one service only (nat maps each to its service).
func (c *Config) validateBackends(e *errs, s *Service, p string, svcOK, protoOK bool, nat map[natTarget]string) {
	bnames := map[string]int{}
	targets := map[netip.AddrPort]int{}
	for _, group := range []struct {
		field string
		list  []Backend
	}{{"backends", s.Backends}, {"fallback", s.Fallback}} {
		for j := range group.list {
			b := &group.list[j]
			bp := fmt.Sprintf("%s.%s[%d]", p, group.field, j)
			c.validateBackend(e, s, b, bp, svcOK)
			if b.Name != "" {
				if prev, dup := bnames[b.Name]; dup {
					e.add(b.pos.at("name"), bp+".name", ErrDuplicate, "backend name %q already used on line %d", b.Name, prev)
				}
				bnames[b.Name] = b.pos.line
			}
			if !b.Address.IsValid() {
				continue
			}
			t := netip.AddrPortFrom(b.Address, s.TargetPort(b))
			if prev, dup := targets[t]; dup {
				e.add(b.pos.at("address"), bp, ErrDuplicate, "backend %s already in this service on line %d", t, prev)
			}
			targets[t] = b.pos.line
			if s.Method == MethodNAT && protoOK {
				nt := natTarget{b.Address, t.Port(), s.Protocol}
				if other, dup := nat[nt]; dup && other != s.Name {
					e.add(b.pos.at("address"), bp, ErrDuplicate,
						"NAT backend %s/%s is already used by service %q: replies could not be mapped back to one VIP", s.Protocol, t, other)
				}
				nat[nt] = s.Name
			}
		}
	}
}

func (c *Config) validateBackend(e *errs, s *Service, b *Backend, p string, svcOK bool) {
	if b.Name != "" && !nameRE.MatchString(b.Name) {
		e.add(b.pos.at("name"), p+".name", ErrValue, "%q: use letters, digits, '.', '_', ':' or '-' (at most 63)", b.Name)
	}
	b.validateThresholds(e, p)
	if !checkAddr(e, b.pos, "address", p, b.Address) {
		return
	}
	if b.Weight != nil && *b.Weight > MaxWeight {
		e.add(b.pos.at("weight"), p+".weight", ErrValue, "weight %d above %d", *b.Weight, MaxWeight)
	}
	if b.Port != 0 && s.Method != MethodNAT {
		e.add(b.pos.at("port"), p+".port", ErrValue, "a backend port is only used by method nat (dr and tunnel keep the service port)")
	}
	if !svcOK {
		return
	}
	switch s.Method {
	case MethodDR, MethodNAT:
		if b.Address.Is4() != s.VIP.Is4() {
			e.add(b.pos.at("address"), p+".address", ErrValue, "method %s needs the backend in the VIP's address family (VIP %s, backend %s)", s.Method, s.VIP, b.Address)
		}
	case MethodTunnel:
		if s.TunnelSource.IsValid() && s.TunnelSource.Addr().Is4() != b.Address.Is4() {
			e.add(b.pos.at("address"), p+".address", ErrValue, "tunnel_source %s and backend %s are of different address families (the outer header needs both in one)", s.TunnelSource, b.Address)
		}
	}
}

func (a *API) validate(e *errs) {
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		e.add(a.pos.at("listen"), "api.listen", ErrValue, "%q is not host:port", a.Listen)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.add(a.pos.at("listen"), "api.listen", ErrValue, "bad port %q", port)
	}
	if a.Token != "" && a.TokenFile != "" {
		e.add(a.pos.at("token_file"), "api.token_file", ErrValue, "set token or token_file, not both")
	}
	if !IsLoopback(host) && a.Token == "" && a.TokenFile == "" {
		e.add(a.pos.at("listen"), "api.listen", ErrMissing, "listening on %q (beyond loopback) requires api.token or api.token_file", a.Listen)
	}
	a.validateAccess(e)
}

// IsLoopback reports whether host (from host:port) only reaches this machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// valid checks an enumerated value (set in Go, or left unset without
// Normalize): its MarshalText refuses what is not one of its names.
func valid(e *errs, line int, path string, v encoding.TextMarshaler) bool {
	if _, err := v.MarshalText(); err != nil {
		e.addErr(line, path, err)
		return false
	}
	return true
}

func checkAddr(e *errs, p pos, field, path string, a netip.Addr) bool {
	switch {
	case !a.IsValid():
		e.add(p.at(field), path+"."+field, ErrMissing, "%s is required", field)
		return false
	case !usableUnicast(a):
		e.add(p.at(field), path+"."+field, ErrValue, "%s is not a usable unicast address", a)
		return false
	}
	return true
}

func usableUnicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
