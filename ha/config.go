package ha

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrConfig is wrapped by every error Config.Validate returns.
var ErrConfig = errors.New("vrrp config")

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
		return fmt.Errorf("%w: vrrp.interface is required", ErrConfig)
	}
	if c.VirtualRouterID == 0 {
		return fmt.Errorf("%w: vrrp.virtual_router_id must be 1..255", ErrConfig)
	}
	if c.Priority == 0 {
		return fmt.Errorf("%w: vrrp.priority must be 1..255 (0 is reserved for shutdown)", ErrConfig)
	}
	if c.Version != 0 && c.Version != 3 {
		return fmt.Errorf("%w: vrrp.version %d: only 3 is supported", ErrConfig, c.Version)
	}
	c.Version = 3
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
	}
	if c.AdvertInterval < 10*time.Millisecond || c.AdvertInterval > MaxInterval*10*time.Millisecond ||
		c.AdvertInterval%(10*time.Millisecond) != 0 {
		return fmt.Errorf("%w: vrrp.advert_interval %v: must be 10ms..40.95s in steps of 10ms",
			ErrConfig, c.AdvertInterval)
	}
	if c.PreemptDelay < 0 {
		return fmt.Errorf("%w: vrrp.preempt_delay %v is negative", ErrConfig, c.PreemptDelay)
	}
	if len(c.VIPs) == 0 {
		return fmt.Errorf("%w: vrrp.vips: at least one VIP is required", ErrConfig)
	}
	if len(c.VIPs) > 255 {
		return fmt.Errorf("%w: vrrp.vips: %d addresses, at most 255", ErrConfig, len(c.VIPs))
	}
	v4 := c.VIPs[0].Is4()
	seen := make(map[netip.Addr]bool, len(c.VIPs))
	for i, a := range c.VIPs {
		if !a.IsValid() || a.Is4In6() || a.Is4() != v4 {
			return fmt.Errorf("%w: vrrp.vips[%d] %v: all VIPs must be valid addresses of one family", ErrConfig, i, a)
		}
		if a.IsMulticast() || a.IsUnspecified() {
			return fmt.Errorf("%w: vrrp.vips[%d] %v is not a unicast address", ErrConfig, i, a)
		}
		if seen[a] {
			return fmt.Errorf("%w: vrrp.vips[%d] %v is listed twice", ErrConfig, i, a)
		}
		seen[a] = true
	}
	for i, p := range c.UnicastPeers {
		if !p.IsValid() || p.Is4In6() || p.Is4() != v4 || p.IsMulticast() || p.IsUnspecified() {
			return fmt.Errorf("%w: vrrp.unicast_peers[%d] %v: must be a unicast address of the VIPs' family",
				ErrConfig, i, p)
		}
	}
	if c.SourceAddress.IsValid() && (c.SourceAddress.Is4() != v4 || c.SourceAddress.Is4In6()) {
		return fmt.Errorf("%w: vrrp.source_address %v: must be of the VIPs' family", ErrConfig, c.SourceAddress)
	}
	if c.GARPRepeat < 0 || c.GARPInterval < 0 {
		return fmt.Errorf("%w: vrrp.garp_repeat and vrrp.garp_interval must not be negative", ErrConfig)
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
