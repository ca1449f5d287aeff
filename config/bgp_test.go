package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const bgpBase = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    backends: [{address: 198.18.0.11}]
`

func TestBGPConfig(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(bgpBase+`bgp:
  local_as: 65001
  router_id: 198.18.0.2
  next_hop: 198.18.0.2
  neighbors:
    - {address: 198.18.0.50, as: 65000, hold_time: 3s, password: secret}
    - {address: 198.18.0.51, as: 65000}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.BGP
	if b == nil || b.LocalAS != 65001 || b.RouterID.String() != "198.18.0.2" || len(b.Neighbors) != 2 ||
		b.Neighbors[0].HoldTime != 3*time.Second || b.Neighbors[1].HoldTime != 90*time.Second ||
		b.Neighbors[0].Password != "secret" || b.WithdrawWait != DefaultWithdrawWait || b.ListenPort != 0 {
		t.Fatalf("parsed %+v", b)
	}
	sc := b.SpeakerConfig()
	if err := sc.Validate(); err != nil || len(sc.Neighbors) != 2 || sc.Neighbors[0].Password != "secret" {
		t.Errorf("speaker config %+v: %v", sc, err)
	}
	// No bgp section: nil.
	cfg, err = Parse("x.yaml", []byte(bgpBase))
	if err != nil || cfg.BGP != nil {
		t.Fatalf("without bgp: %v %+v", err, cfg)
	}
}

func TestBGPConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"empty": {"bgp: {}\n", "x.yaml:7: bgp.local_as: missing"},
		"router id v6": {"bgp:\n  local_as: 1\n  router_id: 2001:2::1\n  next_hop: 198.18.0.2\n  neighbors: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:9: bgp.router_id: bad value: 2001:2::1 is not an IPv4 address"},
		"as too big": {"bgp:\n  local_as: 4294967296\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:8: bgp.local_as: bad value"},
		"hold time": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors:\n    - {address: 198.18.0.50, as: 2, hold_time: 1s}\n",
			"x.yaml:12: bgp.neighbors[0].hold_time: bad value: 1s"},
		"missing as": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors:\n    - {address: 198.18.0.50}\n",
			"x.yaml:12: bgp.neighbors[0].as: missing"},
		"dup neighbor": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors:\n    - {address: 198.18.0.50, as: 2}\n    - {address: 198.18.0.50, as: 2}\n",
			"x.yaml:13: bgp.neighbors[1].address: duplicate"},
		"no v4 hop": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop6: 2001:2::2\n  neighbors: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:8: bgp.next_hop: missing: next_hop is required: a service has an IPv4 VIP"},
		"v6 as v4 hop": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 2001:2::2\n  neighbors: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:10: bgp.next_hop: bad value"},
		"unknown field": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbours: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:11: bgp.neighbours: unknown field"},
		"negative wait": {"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  withdraw_wait: -1s\n  neighbors: [{address: 198.18.0.50, as: 2}]\n",
			"x.yaml:11: bgp.withdraw_wait: bad value"},
	} {
		_, err := Parse("x.yaml", []byte(bgpBase+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v\nwant it to contain %q", name, err, tc.want)
		}
		var ce ConfigErrors
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: not a ConfigErrors: %T", name, err)
		}
	}
}

func TestBGPEqual(t *testing.T) {
	parse := func(extra string) *Config {
		c, err := Parse("x.yaml", []byte(bgpBase+"bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors: [{address: 198.18.0.50, as: 2"+extra+"}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := parse(""), parse("")
	if !a.BGP.Equal(b.BGP) {
		t.Errorf("same section not Equal")
	}
	if a.BGP.Equal(parse(", hold_time: 3s").BGP) {
		t.Errorf("changed hold time is Equal")
	}
	noBGP, _ := Parse("x.yaml", []byte(bgpBase))
	if noBGP.BGP.Equal(a.BGP) || !noBGP.BGP.Equal(nil) {
		t.Errorf("nil sections: Equal wrong")
	}
}

// FuzzBGPConfig: a configuration with a bgp section either parses (and then its
// speaker configuration is one the bgp package accepts) or is refused with
// ConfigErrors.
func FuzzBGPConfig(f *testing.F) {
	f.Add([]byte(bgpBase + "bgp:\n  local_as: 65001\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  neighbors:\n    - {address: 198.18.0.50, as: 65000, hold_time: 3s, password: pw, port: 1179}\n"))
	f.Add([]byte(bgpBase + "bgp:\n  local_as: 1\n  router_id: 198.18.0.2\n  next_hop: 198.18.0.2\n  next_hop6: 2001:2::2\n  listen_port: 179\n  withdraw_wait: 0s\n  neighbors: [{address: 2001:2::50, as: 2}]\n"))
	f.Add([]byte(bgpBase + "bgp: {local_as: 0, router_id: 0.0.0.0, neighbors: [{address: 255.255.255.255, as: 1}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) == 0 {
				t.Fatalf("error %T %v is not a non-empty ConfigErrors", err, err)
			}
			return
		}
		if cfg.BGP == nil {
			return
		}
		sc := cfg.BGP.SpeakerConfig()
		if err := sc.Validate(); err != nil {
			t.Fatalf("control accepted a bgp section the speaker refuses: %v", err)
		}
	})
}
