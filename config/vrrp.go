package config

import (
	"fmt"
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
	// Name names the instance in notify arguments, sync groups and logs
	// (required in vrrp_instances; default "vrrp" for the vrrp section).
	Name string `yaml:"name"`
	// Notify runs programs on the instance's state changes.
	Notify *Notify `yaml:"notify"`
	// TrackScripts and TrackInterfaces lower the priority by their weight
	// while they fail, or put the instance in fault (weight 0).
	TrackScripts    []Track `yaml:"track_scripts"`
	TrackInterfaces []Track `yaml:"track_interfaces"`

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

// validateVRRP checks the vrrp section and the vrrp_instances, each with
// ha's own rules (one source of truth), placing each error on the line of
// the field it names, then the tracking and sync groups.
func (c *Config) validateVRRP(e *errs) {
	insts := c.Instances()
	if len(insts) == 0 {
		c.validateTracking(e)
		return
	}
	if c.BGP != nil {
		// The BGP announcer announces while the host forwards; it does not
		// follow VRRP, so a backup would draw traffic it does not forward.
		e.add(insts[0].pos.line, instancePath(c, 0), ErrValue, "vrrp and bgp cannot be used together (a VRRP backup would announce VIPs it does not forward): choose one")
		return
	}
	for i, v := range insts {
		c.validateInstance(e, v, instancePath(c, i))
	}
	c.validateTracking(e)
}

// instancePath is the config path of Instances()[i].
func instancePath(c *Config, i int) string {
	if c.VRRP != nil {
		if i == 0 {
			return "vrrp"
		}
		i--
	}
	return fmt.Sprintf("vrrp_instances[%d]", i)
}

func (c *Config) validateInstance(e *errs, v *VRRP, p string) {
	if c.failed[p] {
		return
	}
	for _, f := range []string{"interface", "virtual_router_id", "priority", "advert_interval", "preempt",
		"preempt_delay", "unicast_peers", "source_address", "vips", "version", "garp_repeat", "garp_interval"} {
		if c.failed[p+"."+f] || c.failedUnder(p+"."+f+"[") {
			return // decoding already said what is wrong; ha's rules would repeat it
		}
	}
	hc := v.HA()
	err := hc.Validate()
	if err == nil {
		return
	}
	msg := strings.TrimPrefix(err.Error(), ha.ErrConfig.Error()+": ")
	path, line := p, v.pos.line
	if m := haFieldRE.FindStringSubmatch(msg); m != nil {
		path, line = p+"."+m[1]+m[2], v.pos.at(m[1])
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

// VRRPEqual reports whether c and o run the same virtual routers, scripts and
// sync groups (a reload cannot change them).
func (c *Config) VRRPEqual(o *Config) bool {
	a, b := c.Instances(), o.Instances()
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return reflect.DeepEqual(scriptsView(c.VRRPScripts), scriptsView(o.VRRPScripts)) &&
		reflect.DeepEqual(groupsView(c.VRRPSyncGroups), groupsView(o.VRRPSyncGroups))
}
