package control

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// policyOf is the data path's view of a service's acl and limits.
func policyOf(sc *config.Service) dataplane.Policy {
	var p dataplane.Policy
	p.Allow, p.Deny = sc.ACL.Lists()
	if r := sc.Limits.NewFlows; r != nil {
		p.NewFlows = dataplane.Rate{PerSecond: uint64(r.Rate), Burst: uint64(r.Burst)}
	}
	if r := sc.Limits.SourceNewFlows; r != nil {
		p.SourceNewFlows = dataplane.Rate{PerSecond: uint64(r.Rate), Burst: uint64(r.Burst)}
		p.SourceBits4, p.SourceBits6 = r.IPv4Prefix, r.IPv6Prefix
	}
	return p
}

// SetACL replaces a service's ACL (allow and deny lists, matched together, the longest
// prefix deciding) until a reload brings the configured one back, and publishes it: the
// XDP programs swap the whole list in at once.
func (c *Controller) SetACL(service string, allow, deny []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.closed {
		return fmt.Errorf("control: set acl: %w", ErrClosed)
	}
	s := c.byName[service]
	if s == nil {
		return fmt.Errorf("service %q: %w", service, ErrNotFound)
	}
	p := s.policy
	p.Allow, p.Deny = allow, deny
	if err := dataplane.CheckPolicy(&p); err != nil {
		return fmt.Errorf("service %q: %w: %w", service, config.ErrValue, err)
	}
	total := 0
	for _, o := range c.services {
		q := &o.policy
		if o == s {
			q = &p
		}
		total += len(q.Allow) + len(q.Deny)
		if len(q.Allow) > 0 {
			total += 2
		}
	}
	if total > config.MaxACLEntries {
		return fmt.Errorf("service %q: %w: %d acl entries over all services, at most %d", service, config.ErrValue, total, config.MaxACLEntries)
	}
	s.policy = p
	c.log.Info("acl changed", "service", service, "allow", len(allow), "deny", len(deny))
	return c.publishLocked("acl " + service)
}

// registerSetACL serves PUT /api/v1/services/{service}/acl.
func registerSetACL(mux *http.ServeMux, c *Controller) {
	mux.HandleFunc("PUT "+APIPrefix+"/services/{service}/acl", func(w http.ResponseWriter, r *http.Request) {
		var body ACLRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxACLBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeErr(w, fmt.Errorf("%w: want a JSON body {\"allow\": [prefixes], \"deny\": [prefixes]}: %w", config.ErrValue, err))
			return
		}
		if err := c.SetACL(r.PathValue("service"), body.Allow, body.Deny); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"service": r.PathValue("service"), "result": "ok"})
	})
}

// ACLRequest is the body of PUT /api/v1/services/{service}/acl.
type ACLRequest struct {
	Allow []netip.Prefix `json:"allow"`
	Deny  []netip.Prefix `json:"deny"`
}
