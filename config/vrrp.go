package config

import (
	"errors"
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

	pos pos
}

func (v *VRRP) setPos(p pos) { v.pos = p }

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
	if c.failedUnder("vrrp.") {
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
		e.add(v.pos.at(ce.Field), "vrrp."+ce.Path(), reason, "%s", ce.Reason)
	default:
		e.add(v.pos.line, "vrrp", ErrValue, "%v", err)
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
