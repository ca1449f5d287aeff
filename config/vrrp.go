package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/xlb-dev/xlb/ha"
)

// VRRP is the optional vrrp section: this host shares the VIPs with other
// xlb (or keepalived) hosts through one VRRPv3 virtual router (package ha).
// Only the master forwards: a backup publishes no services to the data
// path, so the VIPs' frames reach its kernel, which does not hold the VIPs.
// The master puts each VIP on the interface (so the kernel answers ARP and
// neighbour solicitations for it) and a backup takes them off. The fields,
// their names and their defaults are ha.Config's, used as they are.
type VRRP struct {
	ha.Config
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
	if c.failedUnder(p + ".") {
		return // decoding already said what is wrong; ha's rules would repeat it
	}
	hc := v.Config // Validate fills defaults: check a copy
	err := hc.Validate()
	var ce *ha.ConfigError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		reason := ErrValue
		if ce.Missing {
			reason = ErrMissing
		}
		e.add(v.pos.at(ce.Field), p+"."+ce.Path(), reason, "%s", ce.Reason)
	default:
		e.add(v.pos.line, p, ErrValue, "%v", err)
	}
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
