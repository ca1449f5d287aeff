package ha

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrConfig is wrapped by every error Config.Validate returns.
var ErrConfig = errors.New("vrrp config")

// ConfigError is the error Config.Validate returns: the field at fault by
// its configuration name, the list index for an element of a list field
// (-1 otherwise), and why. It wraps ErrConfig.
type ConfigError struct {
	Field  string // e.g. "vips"
	Index  int    // e.g. 2 for vips[2]; -1 when the field is not a list element
	Reason string // e.g. "198.19.0.1 is listed twice"
	// Missing: the field is required and not set (otherwise its value is wrong).
	Missing bool
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%v: vrrp.%s: %s", ErrConfig, e.Path(), e.Reason)
}

// Path is the field with its index: "vips[2]", "priority".
func (e *ConfigError) Path() string {
	if e.Index >= 0 {
		return fmt.Sprintf("%s[%d]", e.Field, e.Index)
	}
	return e.Field
}

func (e *ConfigError) Unwrap() error { return ErrConfig }

func badField(field string, format string, a ...any) error {
	return &ConfigError{Field: field, Index: -1, Reason: fmt.Sprintf(format, a...)}
}

func badElem(field string, i int, format string, a ...any) error {
	return &ConfigError{Field: field, Index: i, Reason: fmt.Sprintf(format, a...)}
}

// Defaults applied by Config.Validate to zero fields.
const (
	DefaultAdvertInterval = time.Second
	DefaultGARPRepeat     = 3
	DefaultGARPInterval   = 100 * time.Millisecond
)

// Config is one VRRPv3 virtual router: the `vrrp:` section of the xlb configuration. The
// yaml tags are the configuration names (see the package documentation for an example).
type Config struct {
	// Interface the advertisements are sent and received on, and the VIPs announced on.
	Interface string `yaml:"interface"`
	// VirtualRouterID (VRID) 1..255, the same on every router of the group.
	VirtualRouterID uint8 `yaml:"virtual_router_id"`
	// Priority 1..254, higher wins; 255 means this router owns the addresses (RFC 5798): it
	// becomes master at once on start-up.
	Priority uint8 `yaml:"priority"`
	// AdvertInterval between advertisements as master, 10ms..40.95s in steps of 10ms
	// (default 1s). A backup adopts the master's interval for its Master_Down_Interval.
	AdvertInterval time.Duration `yaml:"advert_interval"`
	// Preempt lets a higher-priority backup take over from a lower-priority master
	// (nil = true, the RFC default).
	Preempt *bool `yaml:"preempt"`
	// PreemptDelay: after start-up, do not preempt for this long (keepalived's preempt_delay).
	PreemptDelay time.Duration `yaml:"preempt_delay"`
	// UnicastPeers: send advertisements to these addresses instead of the multicast group
	// (224.0.0.18 or ff02::12), and accept advertisements only from them.
	UnicastPeers []netip.Addr `yaml:"unicast_peers"`
	// SourceAddress of the advertisements, which is also the tie breaker between equal
	// priorities (optional: default the interface's first IPv4 address that is not a VIP, or
	// its IPv6 link-local address).
	SourceAddress netip.Addr `yaml:"source_address"`
	// VIPs owned by the virtual router: all IPv4 or all IPv6 (one virtual router per family,
	// as RFC 5798 says), at most 255.
	VIPs []netip.Addr `yaml:"vips"`
	// Version of VRRP: 3 (or 0, meaning 3). Nothing else is spoken.
	Version int `yaml:"version"`
	// GARPRepeat is how many gratuitous ARPs / unsolicited neighbour advertisements are sent
	// per VIP on becoming master (default 3), GARPInterval apart (default 100ms).
	GARPRepeat   int           `yaml:"garp_repeat"`
	GARPInterval time.Duration `yaml:"garp_interval"`
}

// IPv6 reports whether the virtual router speaks VRRP over IPv6 (its VIPs are IPv6).
func (c *Config) IPv6() bool { return len(c.VIPs) > 0 && !c.VIPs[0].Is4() }

// PreemptEnabled reports the effective preempt mode.
func (c *Config) PreemptEnabled() bool { return c.Preempt == nil || *c.Preempt }

// Validate checks c and fills defaults in place. Every error wraps ErrConfig and names the field.
func (c *Config) Validate() error {
	if c.Interface == "" {
		return &ConfigError{Field: "interface", Index: -1, Reason: "is required", Missing: true}
	}
	if c.VirtualRouterID == 0 {
		return badField("virtual_router_id", "must be 1..255")
	}
	if c.Priority == 0 {
		return badField("priority", "must be 1..255 (0 is reserved for shutdown)")
	}
	if c.Version != 0 && c.Version != 3 {
		return badField("version", "%d: only 3 is supported", c.Version)
	}
	c.Version = 3
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
	}
	if c.AdvertInterval < 10*time.Millisecond || c.AdvertInterval > MaxInterval*10*time.Millisecond ||
		c.AdvertInterval%(10*time.Millisecond) != 0 {
		return badField("advert_interval", "%v: must be 10ms..40.95s in steps of 10ms", c.AdvertInterval)
	}
	if c.PreemptDelay < 0 {
		return badField("preempt_delay", "%v is negative", c.PreemptDelay)
	}
	if len(c.VIPs) == 0 {
		return &ConfigError{Field: "vips", Index: -1, Reason: "at least one VIP is required", Missing: true}
	}
	if len(c.VIPs) > 255 {
		return badField("vips", "%d addresses, at most 255", len(c.VIPs))
	}
	v4 := c.VIPs[0].Is4()
	seen := make(map[netip.Addr]bool, len(c.VIPs))
	for i, a := range c.VIPs {
		if !a.IsValid() || a.Is4In6() || a.Is4() != v4 {
			return badElem("vips", i, "%v: all VIPs must be valid addresses of one family", a)
		}
		if a.IsMulticast() || a.IsUnspecified() {
			return badElem("vips", i, "%v is not a unicast address", a)
		}
		if seen[a] {
			return badElem("vips", i, "%v is listed twice", a)
		}
		seen[a] = true
	}
	for i, p := range c.UnicastPeers {
		if !p.IsValid() || p.Is4In6() || p.Is4() != v4 || p.IsMulticast() || p.IsUnspecified() {
			return badElem("unicast_peers", i, "%v: must be a unicast address of the VIPs' family", p)
		}
	}
	if c.SourceAddress.IsValid() && (c.SourceAddress.Is4() != v4 || c.SourceAddress.Is4In6()) {
		return badField("source_address", "%v: must be of the VIPs' family", c.SourceAddress)
	}
	if c.GARPRepeat < 0 {
		return badField("garp_repeat", "%d is negative", c.GARPRepeat)
	}
	if c.GARPInterval < 0 {
		return badField("garp_interval", "%v is negative", c.GARPInterval)
	}
	if c.GARPRepeat == 0 {
		c.GARPRepeat = DefaultGARPRepeat
	}
	if c.GARPInterval == 0 {
		c.GARPInterval = DefaultGARPInterval
	}
	return nil
}

// centis converts a validated interval to centiseconds.
func centis(d time.Duration) uint16 { return uint16(d / (10 * time.Millisecond)) }

// fromCentis converts centiseconds to a duration.
func fromCentis(c uint16) time.Duration { return time.Duration(c) * 10 * time.Millisecond }
