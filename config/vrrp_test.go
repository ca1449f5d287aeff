package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const vrrpGood = base + `vrrp:
  interface: eth0
  virtual_router_id: 51
  priority: 150
  advert_interval: 100ms
  preempt: false
  unicast_peers: [198.18.0.2]
  vips: [198.19.0.10]
`

func TestVRRPSection(t *testing.T) {
	cfg, err := Parse("v.yaml", []byte(vrrpGood))
	if err != nil {
		t.Fatal(err)
	}
	v := cfg.VRRP
	if v == nil {
		t.Fatal("no vrrp section")
	}
	hc := v.Config
	if err := hc.Validate(); err != nil {
		t.Fatal(err)
	}
	if hc.Interface != "eth0" || hc.VirtualRouterID != 51 || hc.Priority != 150 ||
		hc.AdvertInterval != 100*time.Millisecond || hc.PreemptEnabled() ||
		len(hc.UnicastPeers) != 1 || hc.UnicastPeers[0] != netip.MustParseAddr("198.18.0.2") ||
		len(hc.VIPs) != 1 || hc.VIPs[0] != netip.MustParseAddr("198.19.0.10") {
		t.Errorf("ha config = %+v", hc)
	}
	if hc.GARPRepeat != 3 || hc.Version != 3 {
		t.Errorf("defaults not filled by ha: %+v", hc)
	}
	noSection, err := Parse("n.yaml", []byte(base))
	if err != nil || noSection.VRRP != nil {
		t.Fatalf("without a vrrp section: %v %+v", err, noSection.VRRP)
	}
}

func TestVRRPSectionErrors(t *testing.T) {
	// base has 8 lines; "vrrp:" is line 9, its fields follow.
	cases := []struct {
		name, section, want string
		reason              error
	}{
		{"vrid out of range", "  interface: eth0\n  virtual_router_id: 300\n  priority: 100\n  vips: [198.19.0.10]\n",
			"v.yaml:11: vrrp.virtual_router_id: bad value: want an integer 0..255, got 300", ErrValue},
		{"vrid zero", "  interface: eth0\n  virtual_router_id: 0\n  priority: 100\n  vips: [198.19.0.10]\n",
			"v.yaml:11: vrrp.virtual_router_id: bad value: must be 1..255", ErrValue},
		{"no interface", "  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n",
			"v.yaml:10: vrrp.interface: missing: is required", ErrMissing},
		{"interval not 10ms steps", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  advert_interval: 15ms\n  vips: [198.19.0.10]\n",
			"v.yaml:13: vrrp.advert_interval: bad value: 15ms: must be 10ms..40.95s in steps of 10ms", ErrValue},
		{"mixed families", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10, 2001:db8::1]\n",
			"v.yaml:13: vrrp.vips[1]: bad value", ErrValue},
		{"peer of other family", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n  unicast_peers: ['2001:db8::2']\n",
			"v.yaml:14: vrrp.unicast_peers[0]: bad value", ErrValue},
		{"bad address", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.300]\n",
			"v.yaml:13: vrrp.vips[0]: bad value: \"198.19.0.300\" is not an IP address", ErrValue},
		{"unknown field", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n  prio: 3\n",
			"v.yaml:14: vrrp.prio: unknown field", ErrUnknownField},
		{"version 2", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n  version: 2\n",
			"v.yaml:14: vrrp.version: bad value: 2: only 3 is supported", ErrValue},
		{"no vips", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n",
			"v.yaml:10: vrrp.vips: missing: at least one VIP is required", ErrMissing},
		{"not a mapping", " [1, 2]\n", "v.yaml:10: vrrp: bad type: want a mapping", ErrType},
		{"notify user unknown", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n" +
			"  notify: {master: [/bin/true], user: xlb-no-such-user}\n",
			"v.yaml:14: vrrp.notify.user: bad value: user xlb-no-such-user", ErrValue},
		{"script user unknown", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n" +
			"  track_scripts: [{name: s}]\nvrrp_scripts:\n  - {name: s, command: [/bin/true], user: xlb-no-such-user}\n",
			"v.yaml:16: vrrp_scripts[0].user: bad value: user xlb-no-such-user", ErrValue},
		{"with bgp", "  interface: eth0\n  virtual_router_id: 1\n  priority: 100\n  vips: [198.19.0.10]\n" +
			"bgp: {local_as: 65001, router_id: 198.18.0.2, next_hop: 198.18.0.2, neighbors: [{address: 198.18.0.1, as: 65000}]}\n",
			"v.yaml:10: vrrp: bad value: vrrp and bgp cannot be used together", ErrValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("v.yaml", []byte(base+"vrrp:\n"+tc.section))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) != 1 {
				t.Fatalf("want one ConfigErrors entry, got %v", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant prefix %q", err, tc.want)
			}
			if !errors.Is(err, tc.reason) {
				t.Errorf("error %q does not wrap %v", err, tc.reason)
			}
		})
	}
}

func TestVRRPEqual(t *testing.T) {
	old, err := Parse("v.yaml", []byte(vrrpGood))
	if err != nil {
		t.Fatal(err)
	}
	same, _ := Parse("v.yaml", []byte("# moved down a line\n"+vrrpGood))
	if !old.VRRP.Equal(same.VRRP) {
		t.Errorf("same section not Equal")
	}
	changed, err := Parse("v.yaml", []byte(strings.Replace(vrrpGood, "priority: 150", "priority: 140", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if old.VRRP.Equal(changed.VRRP) {
		t.Errorf("changed priority is Equal")
	}
	none, _ := Parse("v.yaml", []byte(base))
	if old.VRRP.Equal(none.VRRP) {
		t.Errorf("removed section is Equal")
	}
}

// FuzzVRRPConfig: any vrrp section is accepted (and then valid for ha) or
// refused with ConfigErrors, never a panic.
func FuzzVRRPConfig(f *testing.F) {
	f.Add([]byte(vrrpGood))
	f.Add([]byte(base + "vrrp:\n  interface: eth0\n  virtual_router_id: 300\n  priority: 0\n  vips: [2001:db8::1, 198.19.0.1]\n"))
	f.Add([]byte(base + "vrrp:\n  interface: eth0\n  virtual_router_id: 1\n  priority: 255\n  advert_interval: 40950ms\n  vips: ['2001:db8::1']\n  unicast_peers: ['fe80::1']\n"))
	f.Add([]byte(base + "vrrp: [1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) == 0 {
				t.Fatalf("error %T %v is not a non-empty ConfigErrors", err, err)
			}
			return
		}
		if cfg.VRRP == nil {
			return
		}
		hc := cfg.VRRP.Config
		if err := hc.Validate(); err != nil {
			t.Fatalf("accepted vrrp section fails ha's Validate: %v", err)
		}
	})
}
