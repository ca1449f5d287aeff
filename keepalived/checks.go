package keepalived

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// checkerKinds maps keepalived's checkers to xlb's health kinds.
var checkerKinds = map[string]string{
	"TCP_CHECK":  "tcp",
	"HTTP_GET":   "http",
	"SSL_GET":    "https",
	"MISC_CHECK": "exec",
	"DNS_CHECK":  "dns",
	"SMTP_CHECK": "smtp",
	"PING_CHECK": "icmp",
	"UDP_CHECK":  "udp",
}

func isChecker(name string) bool {
	_, ok := checkerKinds[name]
	return ok || name == "BFD_CHECK" || name == "FILE_CHECK"
}

// shellChars are what make a misc_path need a shell.
const shellChars = "|&;<>()$`*?[]~\\'\"\n"

// plainRE matches a regex that is a literal string (usable as expect_body).
var plainRE = regexp.MustCompile(`^[A-Za-z0-9 _,:/=%@-]+$`)

// checker translates one checker block of real server rs (port rsPort) into one xlb check,
// or nil (with a note) when it has no counterpart. Multiple url blocks of an HTTP_GET become
// several checks in one (the first carries the others in Checks).
func (t *translator) checker(vs, rs, n *Node, vsPort, rsPort uint16, interval time.Duration) []*outHealth {
	kind, ok := checkerKinds[n.Name]
	if !ok {
		if n.Name == "BFD_CHECK" || n.Name == "FILE_CHECK" {
			t.drop(n, "xlb has no %s: an exec check can test the same thing", n.Name)
		}
		return nil
	}
	h := &outHealth{Kind: kind}
	if rsPort != vsPort && kind != "exec" && kind != "icmp" {
		h.Port = rsPort // keepalived checks the real server's port; xlb the service's
	}
	timeout, retry := kaConnectTimeout, 1
	if kind == "exec" {
		retry = 0
	}
	// Timing set on the virtual or real server applies to its checkers unless they say more.
	for _, scope := range []*Node{vs, rs, n} {
		for _, o := range scope.Children {
			switch o.Name {
			case "connect_timeout", "misc_timeout":
				if d, ok := seconds(o.Arg(0)); ok && d > 0 {
					timeout = d
				}
			case "retry", "nb_get_retry":
				if r, ok := uintArg(o, 0, 0, 100); ok {
					retry = int(r)
				}
			case "virtualhost":
				if kind == "http" || kind == "https" {
					h.Host = o.Arg(0)
				}
			}
		}
	}
	h.Fall = retry + 1
	h.Rise = 1 // keepalived takes a real server back on its first good check
	if timeout > interval {
		t.approx(n, "timeout %v is longer than delay_loop %v: xlb needs timeout <= interval, using %v", timeout, interval, interval)
		timeout = interval
	}
	h.Timeout = dur(timeout)
	for _, o := range n.Children {
		if !t.checkOption(h, o, rsPort) {
			t.checkerOption(h, o)
		}
	}
	if kind == "exec" && len(h.Command) == 0 {
		t.drop(n, "MISC_CHECK without misc_path")
		return nil
	}
	if h.Port == 0 && vsPort == 0 && rsPort == 0 && kind != "exec" && kind != "icmp" {
		t.drop(n, "the check needs a port: give connect_port")
		return nil
	}
	if kind == "exec" && h.User == "" {
		h.User = t.scriptUser
	}
	if kind == "dns" && h.Query == "" {
		h.Query, h.QueryType = ".", orStr(h.QueryType, "SOA") // keepalived's defaults
	}
	if kind == "http" || kind == "https" {
		return t.webChecks(h, n)
	}
	return []*outHealth{h}
}

// checkOption handles the options every checker shares; false means "not one of them".
func (t *translator) checkOption(h *outHealth, o *Node, rsPort uint16) bool {
	switch o.Name {
	case "connect_timeout", "misc_timeout", "retry", "nb_get_retry", "virtualhost":
	case "connect_port":
		if p, ok := uintArg(o, 0, 1, 65535); ok {
			h.Port = uint16(p)
		} else {
			t.drop(o, "%q is not a port", o.Arg(0))
		}
	case "delay_before_retry":
		t.approx(o, "xlb retries at the check interval, not after delay_before_retry")
	case "connect_ip":
		t.approx(o, "xlb checks the backend's own address (or the VIP with through_vip), not %s", o.Arg(0))
	case "bindto", "bind_port", "bind_if", "fwmark":
		t.drop(o, "xlb's checks use the kernel's route and source address (through_vip marks them for the VIP path)")
	case "warmup":
		t.drop(o, "xlb staggers the first checks over the interval")
	case "alpha":
		t.approx(o, "xlb starts every backend unknown and lets the first check decide")
	default:
		return false
	}
	return true
}

// checkerOption handles a kind's own options.
func (t *translator) checkerOption(h *outHealth, o *Node) {
	switch {
	case o.Name == "misc_path":
		h.Command = command(o.Arg(0))
		if len(o.Args) > 1 {
			h.Command = append(command(o.Arg(0)), o.Args[1:]...)
		}
	case o.Name == "misc_dynamic":
		h.DynamicWeight = true
	case o.Name == "user" && h.Kind == "exec":
		h.User = o.Arg(0)
		if len(o.Args) > 1 {
			t.approx(o, "xlb runs the program with the user's own groups, not group %s", o.Arg(1))
		}
	case o.Name == "type" && h.Kind == "dns":
		if _, ok := dns.StringToType[strings.ToUpper(o.Arg(0))]; ok {
			h.QueryType = strings.ToUpper(o.Arg(0))
		} else {
			t.drop(o, "unknown DNS type %q", o.Arg(0))
		}
	case o.Name == "name" && h.Kind == "dns":
		if o.Arg(0) != "" {
			h.Query = o.Arg(0)
		}
	case o.Name == "helo_name" && h.Kind == "smtp":
		h.Helo = o.Arg(0)
	case o.Name == "host" && h.Kind == "smtp":
		t.drop(o, "xlb's smtp check talks to the backend itself; a host block naming another server has no counterpart")
	case o.Name == "url" || o.Name == "enable_sni" || o.Name == "tls_compliant" || o.Name == "http_protocol":
		// Read by webChecks.
	case o.Name == "payload" && h.Kind == "udp":
		t.drop(o, "keepalived's payload is hex: set health.payload by hand")
	case o.Name == "require_reply" && h.Kind == "udp":
	default:
		t.drop(o, "unknown %s keyword", strings.ToLower(h.Kind))
	}
}

// webChecks reads the url blocks of an HTTP_GET or SSL_GET: one check per url.
func (t *translator) webChecks(h *outHealth, n *Node) []*outHealth {
	// keepalived's SSL_GET does not verify the server's certificate.
	h.InsecureSkipVerify = h.Kind == "https"
	var out []*outHealth
	for _, o := range n.Children {
		switch o.Name {
		case "url":
			c := *h
			c.Path, c.ExpectStatus = "/", 0
			for _, u := range o.Children {
				t.urlOption(&c, u)
			}
			out = append(out, &c)
		case "enable_sni":
			if h.Kind == "https" && h.Host == "" {
				t.approx(o, "xlb sends the Host header (virtualhost) as SNI; none is set, so none is sent")
			}
		}
	}
	if len(out) == 0 {
		h.Path = "/"
		return []*outHealth{h}
	}
	return out
}

func (t *translator) urlOption(c *outHealth, u *Node) {
	switch u.Name {
	case "path":
		c.Path = u.Arg(0)
		if !strings.HasPrefix(c.Path, "/") {
			c.Path = "/" + c.Path
		}
	case "status_code":
		code, err := strconv.Atoi(u.Arg(0))
		if err != nil || code < 100 || code > 599 || len(u.Args) > 1 {
			first, _, _ := strings.Cut(u.Arg(0), "-")
			code, err = strconv.Atoi(first)
			if err != nil || code < 100 || code > 599 {
				t.drop(u, "%q is not a status code: expecting 200", u.Arg(0))
				return
			}
			t.approx(u, "xlb expects one status code: %d", code)
		}
		c.ExpectStatus = code
	case "digest":
		t.drop(u, "xlb checks the status code (and expect_body text), not an MD5 digest of the page")
	case "regex":
		if plainRE.MatchString(u.Arg(0)) {
			c.ExpectBody = u.Arg(0)
			return
		}
		t.drop(u, "xlb looks for a plain text in the body (expect_body), not a regular expression")
	case "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
		t.drop(u, "xlb has no regular-expression body checks")
	case "virtualhost":
		c.Host = u.Arg(0)
	default:
		t.drop(u, "unknown url keyword")
	}
}

// command splits a keepalived script line into words (keepalived itself runs it without a
// shell); a line with shell syntax is run by /bin/sh -c, as keepalived 1.x did.
func command(line string) []string {
	if strings.ContainsAny(line, shellChars) {
		return []string{"/bin/sh", "-c", line}
	}
	return strings.Fields(line)
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
