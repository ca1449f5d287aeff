package config

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// ACL is a service's source filter, enforced in the XDP program before a frame reaches a
// worker. Allow and Deny (and the files AllowFile and DenyFile, one address or prefix per
// line, '#' starts a comment) are matched together, the longest prefix deciding; a
// service with any allow entry drops the sources (of both families) that match no entry.
type ACL struct {
	Allow     []netip.Prefix `yaml:"allow"`
	Deny      []netip.Prefix `yaml:"deny"`
	AllowFile string         `yaml:"allow_file"`
	DenyFile  string         `yaml:"deny_file"`

	pos pos
	// The entries of AllowFile and DenyFile, read by Validate.
	fileAllow, fileDeny []netip.Prefix
}

func (a *ACL) setPos(p pos) { a.pos = p }

// IsZero reports whether the ACL has no entry and names no file.
func (a *ACL) IsZero() bool {
	return len(a.Allow)+len(a.Deny) == 0 && a.AllowFile == "" && a.DenyFile == ""
}

// Lists returns every allow and deny entry: the inline ones, then the files' (as read by
// the last Validate).
func (a *ACL) Lists() (allow, deny []netip.Prefix) {
	allow = append(append([]netip.Prefix(nil), a.Allow...), a.fileAllow...)
	deny = append(append([]netip.Prefix(nil), a.Deny...), a.fileDeny...)
	return allow, deny
}

// Limits are a service's new-flow limits, enforced in the XDP program on TCP SYNs (so tcp
// services only).
type Limits struct {
	// NewFlows limits the new flows of the whole service.
	NewFlows *Rate `yaml:"new_flows"`
	// SourceNewFlows limits the new flows of each source prefix (Rate.IPv4Prefix and
	// IPv6Prefix bits of the source, default 24 and 64).
	SourceNewFlows *Rate `yaml:"source_new_flows"`

	pos pos
}

func (l *Limits) setPos(p pos) { l.pos = p }

// Rate is a token bucket: Rate new flows per second on average, Burst at once (default:
// Rate, at least 1).
type Rate struct {
	Rate  uint32 `yaml:"rate"`
	Burst uint32 `yaml:"burst"`
	// IPv4Prefix and IPv6Prefix size the source prefixes of source_new_flows.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`

	pos pos
}

func (r *Rate) setPos(p pos) { r.pos = p }

// Defaults of the source prefixes of source_new_flows.
const (
	DefaultSourceIPv4Prefix = 24
	DefaultSourceIPv6Prefix = 64
)

// MaxACLEntries bounds the ACL entries of all services together: the XDP program holds
// 131072 rules, and a changed list is built next to the one it replaces.
const MaxACLEntries = 65536

func (r *Rate) normalize(source bool) {
	if r.Burst == 0 {
		r.Burst = max(r.Rate, 1)
	}
	if source {
		if r.IPv4Prefix == 0 {
			r.IPv4Prefix = DefaultSourceIPv4Prefix
		}
		if r.IPv6Prefix == 0 {
			r.IPv6Prefix = DefaultSourceIPv6Prefix
		}
	}
}

func (l *Limits) normalize() {
	if l.NewFlows != nil {
		l.NewFlows.normalize(false)
	}
	if l.SourceNewFlows != nil {
		l.SourceNewFlows.normalize(true)
	}
}

func (c *Config) validateDefence(e *errs, s *Service, p string) {
	c.validateACL(e, &s.ACL, p+".acl")
	if s.TableShare < 1 || s.TableShare > 100 {
		e.add(s.pos.at("table_share"), p+".table_share", ErrValue, "%d%% not in 1..100 (the share of each worker's connection table)", s.TableShare)
	}
	l := &s.Limits
	if l.NewFlows == nil && l.SourceNewFlows == nil {
		return
	}
	if s.Protocol != TCP {
		e.add(l.pos.line, p+".limits", ErrValue, "limits count TCP SYNs: protocol %s has no new-flow packet to count", s.Protocol)
	}
	for _, r := range []struct {
		field  string
		rate   *Rate
		source bool
	}{{"new_flows", l.NewFlows, false}, {"source_new_flows", l.SourceNewFlows, true}} {
		if r.rate == nil {
			continue
		}
		rp := p + ".limits." + r.field
		if r.rate.Rate == 0 {
			e.add(r.rate.pos.at("rate"), rp+".rate", ErrValue, "rate must be at least 1 new flow per second")
		}
		if !r.source && (r.rate.pos.has("ipv4_prefix") || r.rate.pos.has("ipv6_prefix") || r.rate.IPv4Prefix != 0 || r.rate.IPv6Prefix != 0) {
			e.add(r.rate.pos.line, rp, ErrValue, "ipv4_prefix and ipv6_prefix belong to source_new_flows")
		}
		if r.source && (r.rate.IPv4Prefix < 1 || r.rate.IPv4Prefix > 32) {
			e.add(r.rate.pos.at("ipv4_prefix"), rp+".ipv4_prefix", ErrValue, "%d not in 1..32", r.rate.IPv4Prefix)
		}
		if r.source && (r.rate.IPv6Prefix < 1 || r.rate.IPv6Prefix > 128) {
			e.add(r.rate.pos.at("ipv6_prefix"), rp+".ipv6_prefix", ErrValue, "%d not in 1..128", r.rate.IPv6Prefix)
		}
	}
}

// aclEntry is where an ACL prefix came from, for messages about it.
type aclEntry struct {
	where string // "allow[3]" or "deny_file /etc/x:12"
	file  string
	line  int
}

func (c *Config) validateACL(e *errs, a *ACL, p string) {
	a.fileAllow, a.fileDeny = nil, nil
	seen := map[netip.Prefix]aclEntry{}
	check := func(pf netip.Prefix, at aclEntry, path string) {
		pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-unmapBits(pf))
		if prev, dup := seen[pf]; dup {
			e.addAt(at.file, at.line, path, ErrDuplicate, "%s is also %s (allow and deny are matched together: list a prefix once)", pf, prev.where)
			return
		}
		seen[pf] = at
	}
	for _, l := range []struct {
		field string
		list  []netip.Prefix
	}{{"allow", a.Allow}, {"deny", a.Deny}} {
		for i, pf := range l.list {
			ip := fmt.Sprintf("%s.%s[%d]", p, l.field, i)
			line := c.itemLine(ip, a.pos.at(l.field))
			check(pf, aclEntry{where: fmt.Sprintf("%s[%d] (line %d)", l.field, i, line), file: c.file, line: line}, ip)
		}
	}
	for _, f := range []struct {
		field, name string
		into        *[]netip.Prefix
	}{{"allow_file", a.AllowFile, &a.fileAllow}, {"deny_file", a.DenyFile, &a.fileDeny}} {
		if f.name == "" {
			continue
		}
		list, err := readPrefixFile(e, f.name, p+"."+f.field, func(pf netip.Prefix, line int) {
			check(pf, aclEntry{where: fmt.Sprintf("%s %s:%d", f.field, f.name, line), file: f.name, line: line}, p+"."+f.field)
		})
		if err != nil {
			e.add(a.pos.at(f.field), p+"."+f.field, ErrValue, "%v", err)
			continue
		}
		*f.into = list
	}
}

// validateACLTotal refuses more ACL entries over all services than the XDP program can
// swap (run after the services' checks, which read the list files).
func (c *Config) validateACLTotal(e *errs) {
	total := 0
	for i := range c.Services {
		a := &c.Services[i].ACL
		allow, deny := a.Lists()
		total += len(allow) + len(deny)
		if len(allow) > 0 {
			total += 2 // the allow list's default rules
		}
		if total > MaxACLEntries {
			e.add(a.pos.line, fmt.Sprintf("services[%d].acl", i), ErrTooBig,
				"%d acl entries up to this service, at most %d over all services", total, MaxACLEntries)
			return
		}
	}
}

// readPrefixFile reads a list file (see parsePrefixList).
func readPrefixFile(e *errs, name, path string, each func(netip.Prefix, int)) ([]netip.Prefix, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return parsePrefixList(e, name, path, data, each)
}

// parsePrefixList parses one address or prefix per line ('#' comments, blank lines
// skipped), reporting bad lines as name:line errors, and calls each for every good entry.
func parsePrefixList(e *errs, name, path string, data []byte, each func(netip.Prefix, int)) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s, _, _ := strings.Cut(sc.Text(), "#")
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pf, err := parsePrefix(s)
		if err != nil {
			e.addAt(name, line, path, ErrValue, "%v", err)
			continue
		}
		each(pf, line)
		out = append(out, pf)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// unmapBits is 96 for an IPv4-mapped IPv6 prefix (which means the IPv4 prefix), else 0.
func unmapBits(pf netip.Prefix) int {
	if pf.Addr().Is4In6() && pf.Bits() >= 96 {
		return 96
	}
	return 0
}

// itemLine is the line of the list item at path, or def when it was not read from a file.
func (c *Config) itemLine(path string, def int) int {
	if l, ok := c.lines[path]; ok {
		return l
	}
	return def
}

// SocketPath returns the API socket's path, "" for none.
func (a *API) SocketPath() string {
	if a.Socket == "none" {
		return ""
	}
	return a.Socket
}

func (a *API) validateAccess(e *errs) {
	if s := a.SocketPath(); s != "" && !filepath.IsAbs(s) {
		e.add(a.pos.at("socket"), "api.socket", ErrValue, "%q is not an absolute path (or none)", a.Socket)
	}
	if a.SocketGroup != "" {
		if a.SocketPath() == "" {
			e.add(a.pos.at("socket_group"), "api.socket_group", ErrValue, "socket_group without a socket")
		} else if _, err := LookupGroup(a.SocketGroup); err != nil {
			e.add(a.pos.at("socket_group"), "api.socket_group", ErrValue, "%v", err)
		}
	}
	switch {
	case (a.TLSCert == "") != (a.TLSKey == ""):
		field := "tls_key"
		if a.TLSCert == "" {
			field = "tls_cert"
		}
		e.add(a.pos.at(field), "api."+field, ErrMissing, "tls_cert and tls_key go together")
	case a.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey); err != nil {
			e.add(a.pos.at("tls_cert"), "api.tls_cert", ErrValue, "certificate %s with key %s: %v", a.TLSCert, a.TLSKey, err)
		}
	}
	if a.ClientCA != "" {
		if a.TLSCert == "" {
			e.add(a.pos.at("client_ca"), "api.client_ca", ErrMissing, "client_ca needs tls_cert and tls_key")
		}
		pem, err := os.ReadFile(a.ClientCA)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			err = fmt.Errorf("no PEM certificate in %s", a.ClientCA)
		}
		if err != nil {
			e.add(a.pos.at("client_ca"), "api.client_ca", ErrValue, "%v", err)
		}
	}
}

// LookupGroup resolves a group name or numeric gid.
func LookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// validateThresholds checks a backend's connection thresholds (at path p).
func (b *Backend) validateThresholds(e *errs, p string) {
	switch {
	case b.LowerThreshold > 0 && b.UpperThreshold == 0:
		e.add(b.pos.at("lower_threshold"), p+".lower_threshold", ErrValue, "lower_threshold without upper_threshold")
	case b.UpperThreshold > 0 && b.LowerThreshold >= b.UpperThreshold:
		e.add(b.pos.at("lower_threshold"), p+".lower_threshold", ErrValue, "lower_threshold %d must be below upper_threshold %d", b.LowerThreshold, b.UpperThreshold)
	}
}
