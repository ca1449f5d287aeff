package control

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

// checkRef is one health check of a backend: its prober ID, what it is made of (to see
// whether a reload changed it), and its last state.
type checkRef struct {
	id    string
	spec  checkSpec
	state health.State
}

// checkIDs are the prober IDs of b's checks.
func (b *beState) checkIDs() []string {
	ids := make([]string, len(b.checks))
	for i, c := range b.checks {
		ids[i] = c.id
	}
	return ids
}

// checked reports whether b has health checks (kind is not none).
func (b *beState) checked() bool { return len(b.checks) > 0 }

// combined is b's health from its checks' states: up only when all are up.
func (b *beState) combined() health.State {
	states := make([]health.State, len(b.checks))
	for i, c := range b.checks {
		states[i] = c.state
	}
	return health.Combine(states...)
}

// checksFor returns the health checks of backend b (control's ID beID) of service s, with
// what they are made of: none for kind none, else one per check, with the ID base (one
// check) or base#1, base#2, ... (several).
func checksFor(s *config.Service, b *config.Backend, base string, beID uint32) ([]health.Check, []checkSpec, error) {
	h := s.HealthOf(b)
	list := h.Checkers()
	var chks []health.Check
	var specs []checkSpec
	for i, hc := range list {
		id := base
		if len(list) > 1 {
			id = fmt.Sprintf("%s#%d", base, i+1)
		}
		chk, spec, ok, err := checkFor(s, b, hc, id, beID)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue // kind none
		}
		chks, specs = append(chks, chk), append(specs, spec)
	}
	return chks, specs, nil
}

// checkFor returns one health check h of backend b and what it is made of; ok is false for
// kind none. A check through the VIP goes to the VIP from sockets marked for the backend
// (see throughvip.go).
func checkFor(s *config.Service, b *config.Backend, h *config.Health, id string, beID uint32) (chk health.Check, spec checkSpec, ok bool, err error) {
	port := s.HealthPort(h, b)
	addr := b.Address
	var dialer *health.Dialer
	if h.ThroughVIP {
		addr = s.VIP
		dialer = &health.Dialer{Mark: throughVIPMark(beID)}
		spec.mark = dialer.Mark
	}
	c, err := checker(h, addr, port, dialer)
	if c == nil || err != nil {
		return health.Check{}, checkSpec{}, false, err
	}
	spec.health, spec.target = *h, netip.AddrPortFrom(addr, port)
	spec.health.Checks = nil
	chk = health.Check{ID: id, Checker: c, Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}
	return chk, spec, true, nil
}

// checker builds the health.Checker of h against addr:port; nil for kind none.
func checker(h *config.Health, addr netip.Addr, port uint16, dialer *health.Dialer) (health.Checker, error) {
	target := netip.AddrPortFrom(addr, port)
	pool, err := h.CertPool()
	if err != nil {
		return nil, err
	}
	web := &health.HTTP{Target: target, TLS: h.Kind == config.HealthHTTPS, Path: h.Path, Host: h.Host,
		ExpectStatus: h.ExpectStatus, ExpectBody: h.ExpectBody, InsecureSkipVerify: h.InsecureSkipVerify,
		RootCAs: pool, Dialer: dialer}
	switch h.Kind {
	case config.HealthICMP:
		return &health.ICMP{Target: addr, Dialer: dialer}, nil
	case config.HealthTCP:
		return &health.TCP{Target: target, Dialer: dialer}, nil
	case config.HealthHTTP, config.HealthHTTPS:
		if h.ServerName != "" && h.Host == "" {
			web.Host = h.ServerName
		}
		return web, nil
	case config.HealthTLS:
		c := &health.TLS{Target: target, ServerName: h.ServerName, InsecureSkipVerify: h.InsecureSkipVerify,
			RootCAs: pool, MinExpiry: h.MinExpiry, Dialer: dialer}
		if h.Path != "" {
			c.HTTP = web
		}
		return c, nil
	case config.HealthUDP:
		u := &health.UDP{Target: target, Payload: []byte(h.Payload), Dialer: dialer}
		if h.Expect != "" {
			u.Expect = []byte(h.Expect)
		}
		return u, nil
	case config.HealthDNS:
		return dnsChecker(h, target, dialer)
	case config.HealthSMTP:
		return &health.SMTP{Target: target, Helo: h.Helo, Dialer: dialer}, nil
	case config.HealthExec:
		env := append([]string{"XLB_BACKEND_ADDRESS=" + addr.String(), fmt.Sprintf("XLB_BACKEND_PORT=%d", port)}, h.Env...)
		return &health.Exec{Command: h.ExecCommand(addr, port), Env: env, User: h.User, DynamicWeight: h.DynamicWeight}, nil
	}
	return nil, nil
}

func dnsChecker(h *config.Health, target netip.AddrPort, dialer *health.Dialer) (health.Checker, error) {
	c := &health.DNS{Target: target, Name: h.Query, Answers: h.ExpectAnswers, Dialer: dialer}
	var err error
	if h.QueryType != "" {
		if c.Type, err = health.ParseDNSType(h.QueryType); err != nil {
			return nil, err
		}
	}
	if h.ExpectRcode != "" {
		if c.Rcode, err = health.ParseDNSRcode(strings.ToUpper(h.ExpectRcode)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// syncChecks makes chks b's checks after a reload and records in ch what the prober must
// add, replace and remove. A check that is made the same keeps running; a changed one is
// replaced keeping its state; a backend that gets its first checks starts unknown, one that
// loses them all is up.
func (c *Controller) syncChecks(b *beState, chks []health.Check, specs []checkSpec, ch *checkChanges) {
	prev := make(map[string]checkRef, len(b.checks))
	for _, r := range b.checks {
		prev[r.id] = r
	}
	wasChecked := b.checked()
	next := make([]checkRef, len(chks))
	for i, chk := range chks {
		p, had := prev[chk.ID]
		delete(prev, chk.ID)
		switch owner := c.byCheck[chk.ID]; {
		case !had || owner != nil && owner != b:
			// New, or taking over the ID of a removed backend's check.
			next[i] = checkRef{id: chk.ID, spec: specs[i], state: health.StateUnknown}
			ch.adds = append(ch.adds, chk)
		case !p.spec.equal(specs[i]):
			chk.Initial = p.state
			next[i] = checkRef{id: chk.ID, spec: specs[i], state: p.state}
			ch.replaces = append(ch.replaces, chk)
		default:
			next[i] = p
		}
	}
	for id := range prev {
		ch.removes = append(ch.removes, id)
	}
	b.checks = next
	switch {
	case len(next) == 0:
		if b.health != health.StateUp {
			b.health, b.since, b.reason = health.StateUp, time.Now(), "no health check"
		}
	case !wasChecked:
		b.health, b.since, b.reason = health.StateUnknown, time.Now(), "health check added"
	}
}
