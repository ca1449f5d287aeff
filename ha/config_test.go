package ha

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	src := `
interface: eth0
virtual_router_id: 51
priority: 150
advert_interval: 200ms
preempt: false
preempt_delay: 5s
unicast_peers: [198.18.0.2]
vips: [198.19.0.10, 198.19.0.11]
version: 3
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Interface != "eth0" || c.VirtualRouterID != 51 || c.Priority != 150 ||
		c.AdvertInterval != 200*time.Millisecond || c.PreemptEnabled() || c.PreemptDelay != 5*time.Second ||
		len(c.UnicastPeers) != 1 || c.UnicastPeers[0] != netip.MustParseAddr("198.18.0.2") ||
		len(c.VIPs) != 2 || c.IPv6() || c.GARPRepeat != DefaultGARPRepeat {
		t.Fatalf("decoded %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{Interface: "eth0", VirtualRouterID: 1, Priority: 100,
			VIPs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}}
	}
	good := base()
	if err := good.Validate(); err != nil || good.AdvertInterval != time.Second || !good.PreemptEnabled() {
		t.Fatalf("defaults: %v %+v", err, good)
	}
	v6 := []netip.Addr{netip.MustParseAddr("2001:db8::1")}
	for _, c := range []struct {
		field string
		mod   func(*Config)
	}{
		{"interface", func(c *Config) { c.Interface = "" }},
		{"virtual_router_id", func(c *Config) { c.VirtualRouterID = 0 }},
		{"priority", func(c *Config) { c.Priority = 0 }},
		{"version", func(c *Config) { c.Version = 2 }},
		{"advert_interval", func(c *Config) { c.AdvertInterval = 5 * time.Millisecond }},
		{"advert_interval", func(c *Config) { c.AdvertInterval = 41 * time.Second }},
		{"advert_interval", func(c *Config) { c.AdvertInterval = 15 * time.Millisecond }},
		{"preempt_delay", func(c *Config) { c.PreemptDelay = -1 }},
		{"vips", func(c *Config) { c.VIPs = nil }},
		{"vips[1]", func(c *Config) { c.VIPs = append(c.VIPs, v6[0]) }},
		{"vips[1]", func(c *Config) { c.VIPs = append(c.VIPs, c.VIPs[0]) }},
		{"vips[0]", func(c *Config) { c.VIPs = []netip.Addr{netip.MustParseAddr("224.0.0.1")} }},
		{"unicast_peers[0]", func(c *Config) { c.UnicastPeers = v6 }},
		{"source_address", func(c *Config) { c.SourceAddress = v6[0] }},
		{"garp_repeat", func(c *Config) { c.GARPRepeat = -1 }},
	} {
		cfg := base()
		c.mod(&cfg)
		err := cfg.Validate()
		var ce *ConfigError
		if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) || ce.Path() != c.field ||
			!strings.Contains(err.Error(), "vrrp."+c.field) {
			t.Errorf("%s: err %v", c.field, err)
		}
	}
}
