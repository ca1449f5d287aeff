package config

import (
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/ha"
)

// VRRP is the optional vrrp section: this host shares the VIPs with other
// xlb (or keepalived) hosts through one VRRPv3 virtual router (package ha).
// Only the master forwards: a backup publishes no services to the data
// path, so the VIPs' frames reach its kernel, which does not hold the VIPs.
// The master puts each VIP on the interface (so the kernel answers ARP and
// neighbour solicitations for it) and a backup takes them off. The fields
// and their defaults are ha.Config's.
type VRRP struct {
	Interface       string        `yaml:"interface"`
	VirtualRouterID uint8         `yaml:"virtual_router_id"`
	Priority        uint8         `yaml:"priority"`
	AdvertInterval  time.Duration `yaml:"advert_interval"`
	Preempt         *bool         `yaml:"preempt"`
	PreemptDelay    time.Duration `yaml:"preempt_delay"`
	UnicastPeers    []netip.Addr  `yaml:"unicast_peers"`
	SourceAddress   netip.Addr    `yaml:"source_address"`
	VIPs            []netip.Addr  `yaml:"vips"`
	Version         int           `yaml:"version"`
	GARPRepeat      int           `yaml:"garp_repeat"`
	GARPInterval    time.Duration `yaml:"garp_interval"`

	pos pos
}

func (v *VRRP) setPos(p pos) { v.pos = p }

// HA returns the section as the ha package's configuration (defaults not
// yet filled: ha.New and ha.Config.Validate fill them).
func (v *VRRP) HA() ha.Config {
	return ha.Config{
		Interface:       v.Interface,
		VirtualRouterID: v.VirtualRouterID,
		Priority:        v.Priority,
		AdvertInterval:  v.AdvertInterval,
		Preempt:         v.Preempt,
		PreemptDelay:    v.PreemptDelay,
		UnicastPeers:    slices.Clone(v.UnicastPeers),
		SourceAddress:   v.SourceAddress,
		VIPs:            slices.Clone(v.VIPs),
		Version:         v.Version,
		GARPRepeat:      v.GARPRepeat,
		GARPInterval:    v.GARPInterval,
	}
}

// haFieldRE finds the field an ha.Config error names: "vrrp.vips[2] ...".
var haFieldRE = regexp.MustCompile(`vrrp\.([a-z_]+)(\[\d+\])?`)

// validateVRRP checks the vrrp section, if any, with ha's own rules (one
// source of truth), and places each error on the line of the field it names.
func (c *Config) validateVRRP(e *errs) {
	v := c.VRRP
	if v == nil || c.failed["vrrp"] {
		return
	}
	if c.BGP != nil {
		// The BGP announcer announces while the host forwards; it does not
		// follow VRRP, so a backup would draw traffic it does not forward.
		e.add(v.pos.line, "vrrp", ErrValue, "vrrp and bgp cannot be used together (a VRRP backup would announce VIPs it does not forward): choose one")
		return
	}
	for _, f := range []string{"interface", "virtual_router_id", "priority", "advert_interval", "preempt",
		"preempt_delay", "unicast_peers", "source_address", "vips", "version", "garp_repeat", "garp_interval"} {
		if c.failed["vrrp."+f] || c.failedUnder("vrrp."+f+"[") {
			return // decoding already said what is wrong; ha's rules would repeat it
		}
	}
	hc := v.HA()
	err := hc.Validate()
	if err == nil {
		return
	}
	msg := strings.TrimPrefix(err.Error(), ha.ErrConfig.Error()+": ")
	path, line := "vrrp", v.pos.line
	if m := haFieldRE.FindStringSubmatch(msg); m != nil {
		path, line = "vrrp."+m[1]+m[2], v.pos.at(m[1])
		msg = strings.TrimPrefix(msg, m[0])
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, ":"), " ")
	}
	reason := ErrValue
	if strings.Contains(msg, "required") {
		reason = ErrMissing
	}
	e.add(line, path, reason, "%s", msg)
}

// failedUnder reports whether a path starting with prefix failed to decode.
func (c *Config) failedUnder(prefix string) bool {
	for p := range c.failed {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// vrrpView is the vrrp section without its positions, for comparison.
func vrrpView(v *VRRP) *VRRP {
	if v == nil {
		return nil
	}
	w := *v
	w.pos = pos{}
	return &w
}

// Equal reports whether two vrrp sections (either may be nil) say the same,
// wherever in their files they are.
func (v *VRRP) Equal(o *VRRP) bool { return reflect.DeepEqual(vrrpView(v), vrrpView(o)) }
