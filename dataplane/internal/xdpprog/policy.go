package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
)

// Sizes of the policy maps (in step with dataplane/bpf/xlb.c).
const (
	// MaxServices is the number of service slots: services, ACL tries and
	// limits per program.
	MaxServices = 4096
	// MaxACLRules is the number of ACL rules over all services of a program
	// (each service with an allow list also uses one default rule per family).
	MaxACLRules = 131072
	// MaxSources is the number of source-prefix buckets the program keeps
	// (least recently used ones are recycled).
	MaxSources = 65536
)

// ErrPolicy: a policy is invalid (bad prefix, a prefix both allowed and
// denied, a source prefix length out of range, too many rules).
var ErrPolicy = errors.New("xdpprog: invalid policy")

// service flags (svc_info.flags).
const (
	flagACL   = 1
	flagLimit = 2
)

// Rate is a token bucket: PerSecond new flows per second on average, Burst of
// them at once (0 counts as 1). PerSecond 0 means no limit.
type Rate struct {
	PerSecond uint64
	Burst     uint64
}

func (r Rate) interval() (interval, burst uint64) {
	if r.PerSecond == 0 {
		return 0, 0
	}
	interval = max(uint64(time.Second)/r.PerSecond, 1)
	b := max(r.Burst, 1)
	return interval, (b - 1) * interval
}

// Policy is a service's defence in the XDP program.
//
// ACL: a packet's source is matched against Allow and Deny together, the
// longest prefix deciding. A service with a non-empty Allow list drops sources
// that match no rule (of either family); one without allows them. Only the
// source address is matched; ICMP errors about a service's flows are not
// filtered (they open no flow), fragments are when their VIP has one service
// of their protocol.
//
// Limits apply to TCP SYNs without ACK, the first packet of a new flow:
// NewFlows for the whole service, SourceNewFlows for each source prefix (the
// source cut to SourceBits4 or SourceBits6 bits; 0 means 24 and 64).
type Policy struct {
	Allow, Deny    []netip.Prefix
	NewFlows       Rate
	SourceNewFlows Rate
	SourceBits4    int
	SourceBits6    int
}

func (pol *Policy) hasACL() bool { return len(pol.Allow)+len(pol.Deny) > 0 }

func (pol *Policy) hasLimit() bool {
	return pol.NewFlows.PerSecond > 0 || pol.SourceNewFlows.PerSecond > 0
}

// rule is one ACL entry of a service: a prefix and what it does. A default rule
// (the allow list's catch-all deny) has a /0 prefix and dflt set.
type rule struct {
	prefix  netip.Prefix
	deny    bool
	dflt    bool
	family6 bool
}

// RuleHits is one ACL rule and the packets that matched it.
type RuleHits struct {
	// Prefix is the rule's prefix; for a default rule 0.0.0.0/0 or ::/0.
	Prefix netip.Prefix
	Deny   bool
	// Default marks the catch-all deny of a service with an allow list.
	Default bool
	Packets uint64
}

// Drop reasons of the per-service drop counters.
type DropReason int

// Per-service drop reasons (enum D_* in dataplane/bpf/xlb.c).
const (
	DropACL        DropReason = iota // source denied by the ACL
	DropRate                         // new flow over the service's rate
	DropSourceRate                   // new flow over its source prefix's rate
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"acl", "rate", "source_rate"}

func (r DropReason) String() string {
	if r >= 0 && r < NumDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", int(r))
}

// Drops are a service's dropped packets by reason, summed over CPUs.
type Drops [NumDropReasons]uint64

// svcState is what the program holds for one service key.
type svcState struct {
	id     uint32
	flags  uint32
	policy Policy
	rules  map[rule]uint32 // rule -> slot in acl_hits
}

func normalizeRules(pol *Policy) ([]rule, error) {
	seen := make(map[netip.Prefix]bool, len(pol.Allow)+len(pol.Deny))
	rules := make([]rule, 0, len(pol.Allow)+len(pol.Deny)+2)
	add := func(list []netip.Prefix, deny bool) error {
		for _, pf := range list {
			if !pf.IsValid() {
				return fmt.Errorf("prefix %v: %w", pf, ErrPolicy)
			}
			pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-unmapBits(pf)).Masked()
			if seen[pf] {
				return fmt.Errorf("prefix %v listed twice (allow and deny are matched together): %w", pf, ErrPolicy)
			}
			seen[pf] = true
			rules = append(rules, rule{prefix: pf, deny: deny, family6: pf.Addr().Is6()})
		}
		return nil
	}
	if err := add(pol.Allow, false); err != nil {
		return nil, err
	}
	if err := add(pol.Deny, true); err != nil {
		return nil, err
	}
	if len(pol.Allow) > 0 {
		for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
			if !seen[all] {
				rules = append(rules, rule{prefix: all, deny: true, dflt: true, family6: all.Addr().Is6()})
			}
		}
	}
	return rules, nil
}

// unmapBits is 96 for an IPv4-mapped IPv6 prefix (so ::ffff:198.18.0.0/112
// becomes 198.18.0.0/16), else 0.
func unmapBits(pf netip.Prefix) int {
	if pf.Addr().Is4In6() && pf.Bits() >= 96 {
		return 96
	}
	return 0
}

func aclKey(r rule) xlbAclKey {
	k := xlbAclKey{Prefixlen: uint32(8 + r.prefix.Bits()), Family: 4}
	a := r.prefix.Addr()
	if r.family6 {
		k.Family = 6
		k.Addr = a.As16()
	} else {
		b := a.As4()
		copy(k.Addr[:], b[:])
	}
	return k
}

func sourceMask(bits, size int) [16]byte {
	var m [16]byte
	for i := range size {
		switch {
		case bits >= 8*(i+1):
			m[i] = 0xff
		case bits > 8*i:
			m[i] = byte(0xff << (8*(i+1) - bits))
		}
	}
	return m
}

func (pol *Policy) limit() (xlbLimit, error) {
	b4, b6 := pol.SourceBits4, pol.SourceBits6
	if b4 == 0 {
		b4 = 24
	}
	if b6 == 0 {
		b6 = 64
	}
	if b4 < 0 || b4 > 32 || b6 < 0 || b6 > 128 {
		return xlbLimit{}, fmt.Errorf("source prefix lengths /%d, /%d: %w", b4, b6, ErrPolicy)
	}
	var l xlbLimit
	l.IntervalNs, l.BurstNs = pol.NewFlows.interval()
	l.SrcIntervalNs, l.SrcBurstNs = pol.SourceNewFlows.interval()
	l.SrcMask4, l.SrcMask6 = sourceMask(b4, 4), sourceMask(b6, 16)
	return l, nil
}

// CheckPolicy validates pol: the checks SetPolicy makes before touching a map.
func CheckPolicy(pol Policy) error {
	rules, err := normalizeRules(&pol)
	if err != nil {
		return err
	}
	if len(rules) > MaxACLRules {
		return fmt.Errorf("%d acl rules, at most %d: %w", len(rules), MaxACLRules, ErrPolicy)
	}
	_, err = pol.limit()
	return err
}

// SetPolicy makes pol the policy of the service k (added with AddService).
// A changed ACL is built as a new trie and swapped in with one map update, so
// every packet sees either the old or the new ACL, never a mix or none. The
// counters of rules that stay are kept; a changed limit starts with a full
// bucket.
func (p *Program) SetPolicy(k Key, pol Policy) error {
	rules, err := normalizeRules(&pol)
	if err != nil {
		return err
	}
	lim, err := pol.limit()
	if err != nil {
		return err
	}
	return p.withKey(k, func(r *xlbFlowKey) error {
		st := p.svcs[*r]
		if st == nil {
			return fmt.Errorf("set policy of %v port %d proto %d: %w: not a service", k.Addr, k.Port, k.Proto, ErrKey)
		}
		return p.setPolicy(r, st, &pol, rules, lim)
	})
}

func (p *Program) setPolicy(r *xlbFlowKey, st *svcState, pol *Policy, rules []rule, lim xlbLimit) error {
	slots, err := p.ruleSlots(st, rules)
	if err != nil {
		return err
	}
	release := func(m map[rule]uint32, keep map[rule]uint32) {
		for ru, s := range m {
			if _, ok := keep[ru]; !ok {
				p.freeRules = append(p.freeRules, s)
			}
		}
	}
	flags := uint32(0)
	if len(rules) > 0 {
		if err := p.swapACL(st.id, rules, slots); err != nil {
			release(slots, st.rules)
			return err
		}
		flags |= flagACL
	}
	if pol.hasLimit() {
		old, _ := st.policy.limit()
		if st.flags&flagLimit == 0 || old != lim {
			p.limitGen++
			lim.Gen = p.limitGen
			if err := p.objs.Limits.Put(st.id, &lim); err != nil {
				release(slots, st.rules)
				return fmt.Errorf("set limits of service slot %d: %w", st.id, err)
			}
		}
		flags |= flagLimit
	}
	if err := p.setFlags(r, st, flags); err != nil {
		release(slots, st.rules)
		return err
	}
	if len(rules) == 0 && st.rules != nil {
		if err := p.objs.Acls.Delete(st.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove acl of service slot %d: %w", st.id, err)
		}
	}
	release(st.rules, slots)
	st.rules, st.policy = slots, clonePolicy(pol)
	if len(rules) == 0 {
		st.rules = nil
	}
	return nil
}

func clonePolicy(pol *Policy) Policy {
	c := *pol
	c.Allow, c.Deny = slices.Clone(pol.Allow), slices.Clone(pol.Deny)
	return c
}

// ruleSlots gives every rule its acl_hits slot: the one it had, or a free one
// whose counters are zeroed first.
func (p *Program) ruleSlots(st *svcState, rules []rule) (map[rule]uint32, error) {
	out := make(map[rule]uint32, len(rules))
	need := 0
	for _, ru := range rules {
		if _, ok := st.rules[ru]; !ok {
			need++
		}
	}
	if need > len(p.freeRules) {
		return nil, fmt.Errorf("%d new acl rules, %d free of %d: %w", need, len(p.freeRules), MaxACLRules, ErrPolicy)
	}
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for _, ru := range rules {
		if s, ok := st.rules[ru]; ok {
			out[ru] = s
			continue
		}
		s := p.freeRules[len(p.freeRules)-1]
		if err := p.objs.AclHits.Put(s, zero); err != nil {
			for _, s := range out {
				if !slices.Contains(p.freeRules, s) {
					p.freeRules = append(p.freeRules, s)
				}
			}
			return nil, fmt.Errorf("zero acl counter %d: %w", s, err)
		}
		p.freeRules = p.freeRules[:len(p.freeRules)-1]
		out[ru] = s
	}
	return out, nil
}

// swapACL builds a trie of rules and puts it in the service's acls slot.
func (p *Program) swapACL(id uint32, rules []rule, slots map[rule]uint32) error {
	spec := p.aclSpec.Copy()
	spec.MaxEntries = uint32(len(rules))
	trie, err := ebpf.NewMap(spec)
	if err != nil {
		return fmt.Errorf("create acl trie of %d rules: %w", len(rules), err)
	}
	defer trie.Close() // the outer map holds its own reference
	for _, ru := range rules {
		k := aclKey(ru)
		v := xlbAclVal{Rule: slots[ru]}
		if ru.deny {
			v.Deny = 1
		}
		if err := trie.Put(&k, &v); err != nil {
			return fmt.Errorf("acl rule %v: %w", ru.prefix, err)
		}
	}
	if err := p.objs.Acls.Put(id, trie); err != nil {
		return fmt.Errorf("install acl trie of service slot %d: %w", id, err)
	}
	return nil
}

// setFlags rewrites the service's svc_info (and its fragments' entry).
func (p *Program) setFlags(r *xlbFlowKey, st *svcState, flags uint32) error {
	if flags == st.flags {
		return nil
	}
	v := xlbSvcInfo{Id: st.id, Flags: flags}
	if err := p.objs.Services.Put(r, &v); err != nil {
		return fmt.Errorf("set service flags: %w", err)
	}
	st.flags = flags
	return p.syncFrag(fragKey(*r))
}

func fragKey(r xlbFlowKey) xlbFlowKey {
	r.Port = 0
	return r
}

// syncFrag points the fragments of (VIP, protocol) fk at the VIP's only
// service of that protocol, or removes the entry when it has none or several.
func (p *Program) syncFrag(fk xlbFlowKey) error {
	var only *svcState
	n := 0
	for r, st := range p.svcs {
		if fragKey(r) == fk {
			only = st
			n++
		}
	}
	if n == 1 {
		v := xlbSvcInfo{Id: only.id, Flags: only.flags}
		if err := p.objs.Frags.Put(&fk, &v); err != nil {
			return fmt.Errorf("set fragment service: %w", err)
		}
		return nil
	}
	if err := p.objs.Frags.Delete(&fk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove fragment service: %w", err)
	}
	return nil
}

// ACLHits returns the service's ACL rules with their packet counts (nil when
// it has no ACL).
func (p *Program) ACLHits(k Key) ([]RuleHits, error) {
	var out []RuleHits
	err := p.withKey(k, func(r *xlbFlowKey) error {
		st := p.svcs[*r]
		if st == nil {
			return fmt.Errorf("acl hits of %v port %d proto %d: %w: not a service", k.Addr, k.Port, k.Proto, ErrKey)
		}
		var per []uint64
		for ru, s := range st.rules {
			if err := p.objs.AclHits.Lookup(s, &per); err != nil {
				return fmt.Errorf("read acl counter %d: %w", s, err)
			}
			h := RuleHits{Prefix: ru.prefix, Deny: ru.deny, Default: ru.dflt}
			for _, v := range per {
				h.Packets += v
			}
			out = append(out, h)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b RuleHits) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, err
}

// ServiceDrops returns the packets dropped for the service k, by reason.
func (p *Program) ServiceDrops(k Key) (Drops, error) {
	var d Drops
	err := p.withKey(k, func(r *xlbFlowKey) error {
		st := p.svcs[*r]
		if st == nil {
			return fmt.Errorf("drops of %v port %d proto %d: %w: not a service", k.Addr, k.Port, k.Proto, ErrKey)
		}
		var per []uint64
		for reason := range NumDropReasons {
			if err := p.objs.SvcDrops.Lookup(st.id*uint32(NumDropReasons)+uint32(reason), &per); err != nil {
				return fmt.Errorf("read drop counter %v: %w", reason, err)
			}
			for _, v := range per {
				d[reason] += v
			}
		}
		return nil
	})
	return d, err
}
