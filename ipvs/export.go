package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/sched"
)

// Export is a configuration's services as ipvsadm-restore input, and what the rules do not
// carry over.
type Export struct {
	// Lines are the ipvsadm-restore input, one command per line.
	Lines []string
	// Notes say, per service, where IPVS differs from xlb or what was left out.
	Notes []string
}

// Text returns the rules as ipvsadm-restore reads them.
func (e *Export) Text() string {
	if len(e.Lines) == 0 {
		return ""
	}
	return strings.Join(e.Lines, "\n") + "\n"
}

// ErrExport is wrapped by errors for a configuration that cannot be exported.
var ErrExport = errors.New("ipvs: export")

// Scheduler maps an xlb scheduler to the IPVS scheduler closest to it, with the scheduler
// flags (-b) that bring it closer, and a note on what still differs ("" when nothing).
func Scheduler(s config.Scheduler) (name, flags, note string, err error) {
	switch s {
	case sched.Maglev, sched.FlowHash:
		return "mh", "mh-port", "IPVS mh hashes the source address and port (mh-port) into a Maglev table of 65537 " +
			"entries, xlb hashes the whole flow (both addresses and ports, protocol) into its own table: both " +
			"consistent, but a flow may land on a different backend", nil
	case sched.SourceHash:
		return "sh", "", "IPVS sh hashes the source address into a 256-entry table by weight, xlb looks the " +
			"source's hash up in a Maglev table: both keep a client on one backend, the spread and the " +
			"disruption when backends change differ", nil
	case sched.RoundRobin:
		return "rr", "", "", nil
	case sched.WeightedRoundRobin:
		return "wrr", "", "IPVS wrr sends runs of picks to the heaviest backends (gcd steps), xlb's smooth wrr " +
			"interleaves them: the same shares over a cycle", nil
	case sched.Random:
		return "wrr", "", "IPVS has no random scheduler: wrr gives the same long-run shares, in turn instead of " +
			"at random", nil
	case sched.LeastConn:
		return "wlc", "", "xlb counts the connections of each worker core's table (an approximation across " +
			"cores), IPVS those of the whole host", nil
	case sched.LeastLoad:
		return "wrr", "", "IPVS has no load-fed scheduler: wrr uses the configured weights only (keepalived's " +
			"MISC_CHECK with dynamic weights adjusts them by load)", nil
	}
	return "", "", "", fmt.Errorf("%w: scheduler %v", ErrExport, s)
}

// forward returns ipvsadm's forwarding flag for an xlb method.
func forward(m config.Method) (string, error) {
	switch m {
	case 0, config.MethodDR: // 0: not set, dr by default
		return "-g", nil
	case config.MethodTunnel:
		return "-i", nil
	case config.MethodNAT:
		return "-m", nil
	}
	return "", fmt.Errorf("%w: method %v", ErrExport, m)
}

// hostPort formats an address and port as ipvsadm reads them ([v6]:port for IPv6).
func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// FromConfig exports every service of c. Services with port 0 (every port of the VIP)
// become firewall-mark services: IPVS takes a port 0 only with persistence, so the VIP's
// packets are marked by a rule the note gives.
func FromConfig(c *config.Config) (*Export, error) {
	e := &Export{}
	mark := 0
	for _, s := range c.Services {
		if err := e.service(s, &mark); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
	}
	if len(c.Services) > 0 {
		e.Notes = append(e.Notes, "health checks are not IPVS rules: keepalived (or another checker) adds and "+
			"removes real servers; these rules list every enabled backend as up")
	}
	return e, nil
}

func (e *Export) service(s config.Service, mark *int) error {
	note := func(f string, a ...any) { e.Notes = append(e.Notes, s.Name+": "+fmt.Sprintf(f, a...)) }
	name, flags, schedNote, err := Scheduler(s.Scheduler)
	if err != nil {
		return err
	}
	fwd, err := forward(s.Method)
	if err != nil {
		return err
	}
	proto := "-t"
	switch s.Protocol {
	case 0, config.TCP: // 0: not set, tcp by default
	case config.UDP:
		proto = "-u"
	default:
		return fmt.Errorf("%w: protocol %v", ErrExport, s.Protocol)
	}
	if !s.VIP.IsValid() {
		return fmt.Errorf("%w: no vip", ErrExport)
	}
	svc := proto + " " + hostPort(s.VIP, s.Port)
	if s.IsGroup() || s.Port == 0 {
		*mark++
		svc = fwmarkService(&s, proto, *mark, note)
	}
	line := "-A " + svc + " -s " + name
	if flags != "" {
		line += " -b " + flags
	}
	line += serviceOptions(&s)
	if s.SlowStart > 0 {
		note("slow_start %v has no IPVS equivalent: a revived backend gets its full share at once", s.SlowStart)
	}
	e.Lines = append(e.Lines, line)
	if schedNote != "" {
		note("scheduler %v as %s: %s", s.Scheduler, name, schedNote)
	}
	switch s.Method {
	case config.MethodTunnel:
		note("tunnel: IPVS encapsulates from the LB's own address (the route to the backend), not from tunnel_source %v", s.TunnelSource)
	case config.MethodNAT:
		note("nat: the backends' route back to the clients must go through the LB, as with xlb")
	}
	for _, b := range s.Backends {
		if b.Disabled {
			note("backend %s is disabled: left out", backendName(b))
			continue
		}
		port := s.Port
		if s.IsGroup() {
			port = 0 // the client's port, whichever of the group's it was
		}
		if s.Method == config.MethodNAT && b.Port != 0 {
			port = b.Port
		}
		e.Lines = append(e.Lines, fmt.Sprintf("-a %s -r %s %s -w %d", svc, hostPort(b.Address, port), fwd, b.WeightOf()))
	}
	if len(s.Fallback) > 0 {
		var names []string
		for _, b := range s.Fallback {
			names = append(names, backendName(b))
		}
		note("fallback backends (%s) are left out: IPVS has no fallback; keepalived's sorry_server is the equivalent",
			strings.Join(names, ", "))
	}
	return nil
}

func backendName(b config.Backend) string {
	if b.Name != "" {
		return b.Name
	}
	return b.Address.String()
}

// fwmarkService returns the firewall-mark service (-f MARK) that stands for a service of
// every port (port 0) or a group (several VIPs or ports), and notes the nftables rule that
// marks its packets.
func fwmarkService(s *config.Service, proto string, mark int, note func(string, ...any)) string {
	svc := fmt.Sprintf("-f %d", mark)
	fam, l4 := "ip", "tcp"
	if s.VIP.Is6() {
		svc += " -6"
		fam = "ip6"
	}
	if proto == "-u" {
		l4 = "udp"
	}
	if !s.IsGroup() {
		note("port 0 (every port) is firewall-mark service %d: mark the VIP's packets first, e.g. "+
			"`nft add rule %s mangle prerouting %s daddr %s meta l4proto %s meta mark set %d`", mark, fam, fam, s.VIP, l4, mark)
		return svc
	}
	vips, ports := s.Frontends()
	var vs, ps []string
	for _, v := range vips {
		vs = append(vs, v.String())
	}
	for _, r := range ports {
		ps = append(ps, r.String())
	}
	note("vips and ports are firewall-mark service %d (as keepalived's virtual_server_group with fwmark): mark the packets first, e.g. "+
		"`nft add rule %s mangle prerouting %s daddr { %s } %s dport { %s } meta mark set %d`",
		mark, fam, fam, strings.Join(vs, ", "), l4, strings.Join(ps, ", "), mark)
	return svc
}

// serviceOptions returns the -A options of persistence (-p, -M) and one-packet scheduling.
func serviceOptions(s *config.Service) string {
	var o string
	if p := s.Persistence; p != nil {
		o += fmt.Sprintf(" -p %d", max(1, int(p.Timeout.Seconds())))
		if s.VIP.Is6() {
			o += fmt.Sprintf(" -M %d", p.Prefix)
		} else {
			o += " -M " + net.IP(net.CIDRMask(p.Prefix, 32)).String()
		}
	}
	if s.OnePacket {
		o += " -o"
	}
	return o
}
