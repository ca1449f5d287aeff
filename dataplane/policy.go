package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
)

// Rate is a token bucket of new flows: PerSecond on average, Burst at once (0 counts as
// 1). PerSecond 0 means no limit.
type Rate struct {
	PerSecond uint64
	Burst     uint64
}

// Policy is a service's defence, enforced by the XDP program before a frame reaches a
// worker (see ServiceSpec.Policy).
//
// Allow and Deny are source prefixes (IPv4 and IPv6, tens of thousands of them) matched
// together, the longest prefix deciding; a service with an Allow list drops sources that
// match no rule. NewFlows limits the TCP SYNs (new flows) of the whole service,
// SourceNewFlows those of each source prefix, the source cut to SourceBits4 / SourceBits6
// bits (0: 24 and 64). Fragments are filtered by the ACL of the service the workers would
// give them; ICMP errors about a service's flows are not (they open no flow).
type Policy struct {
	Allow, Deny    []netip.Prefix
	NewFlows       Rate
	SourceNewFlows Rate
	SourceBits4    int
	SourceBits6    int
}

// IsZero reports whether the policy does nothing.
func (p *Policy) IsZero() bool {
	return len(p.Allow)+len(p.Deny) == 0 && p.NewFlows.PerSecond == 0 && p.SourceNewFlows.PerSecond == 0
}

func (p *Policy) equal(o *Policy) bool {
	return slices.Equal(p.Allow, o.Allow) && slices.Equal(p.Deny, o.Deny) && p.NewFlows == o.NewFlows &&
		p.SourceNewFlows == o.SourceNewFlows && p.SourceBits4 == o.SourceBits4 && p.SourceBits6 == o.SourceBits6
}

func (p *Policy) prog() xdpprog.Policy {
	return xdpprog.Policy{Allow: p.Allow, Deny: p.Deny,
		NewFlows:       xdpprog.Rate{PerSecond: p.NewFlows.PerSecond, Burst: p.NewFlows.Burst},
		SourceNewFlows: xdpprog.Rate{PerSecond: p.SourceNewFlows.PerSecond, Burst: p.SourceNewFlows.Burst},
		SourceBits4:    p.SourceBits4, SourceBits6: p.SourceBits6}
}

// own gives p lists of its own (the snapshot's copy) and checks it.
func (p *Policy) own() error {
	p.Allow, p.Deny = slices.Clone(p.Allow), slices.Clone(p.Deny)
	return CheckPolicy(p)
}

// ErrBadPolicy: a service's policy is invalid (a prefix in both lists, a bad source prefix
// length, more rules than the program holds).
var ErrBadPolicy = errors.New("invalid service policy")

// CheckPolicy validates p without a data path: the checks Publish would make.
func CheckPolicy(p *Policy) error {
	if err := xdpprog.CheckPolicy(p.prog()); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	return nil
}

// PolicyDrops are the packets the XDP programs dropped for one service, by reason.
type PolicyDrops struct {
	ACL        uint64 `json:"acl"`         // source denied by the ACL
	Rate       uint64 `json:"rate"`        // new flow over the service's rate
	SourceRate uint64 `json:"source_rate"` // new flow over its source prefix's rate
}

// RuleHits is an ACL rule of a service with the packets that matched it.
type RuleHits struct {
	Prefix  netip.Prefix `json:"prefix"`
	Deny    bool         `json:"deny"`
	Default bool         `json:"default,omitempty"` // the catch-all deny of an allow list
	Packets uint64       `json:"packets"`
}

// policyMaps is the part of an interface's XDP program that enforces policies.
type policyMaps interface {
	SetPolicy(xdpprog.Key, xdpprog.Policy) error
}

// applyPolicies brings every program's service policies in step with s (called by Publish
// with d.mu held, after the service keys are in the programs' maps and before the workers
// see s). A policy that did not change is left alone, so its rule counters and buckets
// stay.
func (d *Dataplane) applyPolicies(s *Snapshot) []error {
	var errs []error
	next := make(map[xdpprog.Key]*Policy, len(s.services))
	for i := range s.services {
		sv := &s.services[i]
		k := xdpprog.Key{Addr: sv.vipIP, Port: sv.spec.Port, Proto: sv.spec.Proto}
		pol := &sv.spec.Policy
		next[k] = pol
		old := d.policies[k]
		if old == nil && pol.IsZero() || old != nil && old.equal(pol) {
			continue
		}
		for _, ifc := range d.ifaces {
			pm, ok := ifc.maps.(policyMaps)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: service %q: %w: no XDP program to enforce it", ifc.info.Name, sv.spec.Name, ErrBadPolicy))
				pol = old
				continue
			}
			if err := pm.SetPolicy(k, pol.prog()); err != nil {
				errs = append(errs, fmt.Errorf("%s: service %q: %w", ifc.info.Name, sv.spec.Name, err))
				pol = old // what the programs still hold
			}
		}
		next[k] = pol
	}
	d.policies = next
	return errs
}

// serviceKey finds the published service name's program key.
func (d *Dataplane) serviceKey(name string) (xdpprog.Key, error) {
	s := d.snap.Load()
	if s != nil {
		for i := range s.services {
			if sv := &s.services[i]; sv.spec.Name == name {
				return xdpprog.Key{Addr: sv.vipIP, Port: sv.spec.Port, Proto: sv.spec.Proto}, nil
			}
		}
	}
	return xdpprog.Key{}, fmt.Errorf("service %q: %w", name, ErrNoService)
}

// ErrNoService: no published service has this name.
var ErrNoService = errors.New("no such service")

// PolicyDrops returns, per published service name, the packets the XDP programs dropped
// for it (summed over interfaces).
func (d *Dataplane) PolicyDrops() (map[string]PolicyDrops, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	out := map[string]PolicyDrops{}
	s := d.snap.Load()
	if s == nil {
		return out, nil
	}
	for i := range s.services {
		sv := &s.services[i]
		k := xdpprog.Key{Addr: sv.vipIP, Port: sv.spec.Port, Proto: sv.spec.Proto}
		var pd PolicyDrops
		for _, ifc := range d.ifaces {
			dr, err := ifc.prog.ServiceDrops(k)
			if err != nil {
				return nil, fmt.Errorf("%s: service %q: %w", ifc.info.Name, sv.spec.Name, err)
			}
			pd.ACL += dr[xdpprog.DropACL]
			pd.Rate += dr[xdpprog.DropRate]
			pd.SourceRate += dr[xdpprog.DropSourceRate]
		}
		out[sv.spec.Name] = pd
	}
	return out, nil
}

// ACLHits returns the ACL rules of the published service with their packet counts, summed
// over interfaces (none when it has no ACL).
func (d *Dataplane) ACLHits(service string) ([]RuleHits, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	k, err := d.serviceKey(service)
	if err != nil {
		return nil, err
	}
	var out []RuleHits
	for n, ifc := range d.ifaces {
		hs, err := ifc.prog.ACLHits(k)
		if err != nil {
			return nil, fmt.Errorf("%s: service %q: %w", ifc.info.Name, service, err)
		}
		for i, h := range hs {
			if n == 0 {
				out = append(out, RuleHits{Prefix: h.Prefix, Deny: h.Deny, Default: h.Default, Packets: h.Packets})
			} else if i < len(out) {
				out[i].Packets += h.Packets
			}
		}
	}
	return out, nil
}

// SteeringCounters are an XDP program's packet counts by verdict reason (redirect_service,
// pass_no_match, drop_acl, drop_rate, drop_source_rate, ...).
type SteeringCounters map[string]uint64

// XDPCounters returns the XDP programs' counters per interface name, by reason name.
func (d *Dataplane) XDPCounters() (map[string]SteeringCounters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	out := make(map[string]SteeringCounters, len(d.ifaces))
	for _, ifc := range d.ifaces {
		if ifc.prog == nil {
			continue
		}
		c, err := ifc.prog.Counters()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ifc.info.Name, err)
		}
		m := make(SteeringCounters, len(c))
		for r, v := range c {
			m[xdpprog.Reason(r).String()] = v
		}
		out[ifc.info.Name] = m
	}
	return out, nil
}
