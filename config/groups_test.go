package config

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const groupYAML = `interfaces: [{name: eth0}]
conn_table:
  size: 65536
  persistence_size: 4096
  timeouts: {tcp: 600s, tcp_fin: 30s, tcp_syn: 20s, udp: 60s, other: 10s}
services:
  - name: web
    vips: [198.19.0.10, 198.19.0.11]
    ports: [80, 443, 8000-8099]
    scheduler: least-conn
    slow_start: 30s
    persistence: {timeout: 300s, prefix: 24}
    backends: [{address: 198.18.0.11}]
  - name: dns
    vip: 2001:2::53
    port: 53
    protocol: udp
    one_packet: true
    persistence: {}
    backends: [{address: 2001:2::11}]
`

func TestGroupConfigParses(t *testing.T) {
	c, err := Parse("g.yaml", []byte(groupYAML))
	if err != nil {
		t.Fatal(err)
	}
	web, dns := &c.Services[0], &c.Services[1]
	vips, ports := web.Frontends()
	if len(vips) != 2 || web.VIP != netip.MustParseAddr("198.19.0.10") || web.Port != 80 ||
		len(ports) != 3 || ports[2] != (PortRange{8000, 8099}) || !web.IsGroup() {
		t.Errorf("web frontends %v %v (vip %v port %d)", vips, ports, web.VIP, web.Port)
	}
	if p := web.SchedPersistence(); p.Timeout != 300*time.Second || p.Prefix4 != 24 {
		t.Errorf("web persistence %+v", p)
	}
	if p := dns.SchedPersistence(); p.Timeout != DefaultPersistenceTimeout || p.Prefix6 != 64 || !dns.OnePacket || dns.IsGroup() {
		t.Errorf("dns persistence %+v (one packet %v)", p, dns.OnePacket)
	}
	ct := c.ConnTable
	if ct.Size != 65536 || ct.PersistenceSize != 4096 || web.SlowStart != 30*time.Second {
		t.Errorf("conn_table %+v slow_start %v", ct, web.SlowStart)
	}
	if to := ct.Timeouts.Sched(); to.TCPEstablished != 600*time.Second || to.TCPFinWait != 30*time.Second ||
		to.TCPSynRecv != 20*time.Second || to.UDP != time.Minute || to.Other != 10*time.Second {
		t.Errorf("timeouts %+v", to)
	}
}

// TestGroupConfigErrors: every new field refuses bad input with its line and reason.
func TestGroupConfigErrors(t *testing.T) {
	rep := func(old, new string) string { return strings.Replace(groupYAML, old, new, 1) }
	for _, tt := range []struct {
		name   string
		yaml   string
		line   int
		reason error
		text   string
	}{
		{"table size small", rep("size: 65536", "size: 10"), 3, ErrValue, "1024.."},
		{"persistence size", rep("persistence_size: 4096", "persistence_size: 1"), 4, ErrValue, "64.."},
		{"timeout zero", rep("tcp: 600s", "tcp: 0s"), 5, ErrValue, "conn_table.timeouts.tcp"},
		{"timeout too long", rep("udp: 60s", "udp: 48h"), 5, ErrValue, "1s..24h"},
		{"timeout not a duration", rep("tcp_fin: 30s", "tcp_fin: soon"), 5, ErrValue, "not a duration"},
		{"unknown timeout", rep("other: 10s", "icmp: 10s"), 5, ErrUnknownField, "icmp"},
		{"vip beside vips", rep("    ports: [80", "    vip: 198.19.0.12\n    ports: [80"), 9, ErrValue, "not one of vips"},
		{"port beside ports", rep("    ports: [80", "    port: 81\n    ports: [80"), 9, ErrValue, "not in ports"},
		{"port 0 beside ports", rep("    ports: [80", "    port: 0\n    ports: [80"), 9, ErrValue, "port 0 is not in ports"},
		{"bad range", rep("8000-8099", "8099-8000"), 9, ErrValue, "backwards"},
		{"port zero in ports", rep("[80, 443", "[0, 443"), 9, ErrValue, "1..65535"},
		{"overlap", rep("[80, 443, 8000-8099]", "[80, 8000-8099, 8050]"), 9, ErrDuplicate, "overlaps"},
		{"vip twice", rep("198.19.0.11]", "198.19.0.10]"), 8, ErrDuplicate, "twice"},
		{"mixed families", rep("198.19.0.11]", "2001:2::10]"), 8, ErrValue, "families"},
		{"too many pairs", rep("8000-8099", "8000-10099"), 0, ErrTooBig, "at most 4096"},
		{"nat group", rep("    scheduler: least-conn", "    method: nat\n    scheduler: least-conn"), 10, ErrValue, "one VIP and one port"},
		{"one packet tcp", rep("    slow_start: 30s", "    slow_start: 30s\n    one_packet: true"), 12, ErrValue, "udp"},
		{"slow start", rep("slow_start: 30s", "slow_start: 2h"), 11, ErrValue, "100ms..1h"},
		{"persistence timeout", rep("timeout: 300s", "timeout: 10ms"), 12, ErrValue, "persistence.timeout"},
		{"persistence prefix", rep("prefix: 24", "prefix: 33"), 12, ErrValue, "1..32"},
		{"persistence unknown", rep("prefix: 24}", "prefix: 24, granularity: 8}"), 12, ErrUnknownField, "granularity"},
		{"shared with a plain service", groupYAML + "  - name: alt\n    vip: 198.19.0.11\n    port: 8050\n    backends: [{address: 198.18.0.12}]\n", 21, ErrDuplicate, `service "web"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("g.yaml", []byte(tt.yaml))
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not ConfigErrors", err)
			}
			for _, fe := range ce {
				if errors.Is(fe, tt.reason) && strings.Contains(fe.Error(), tt.text) {
					if tt.line != 0 && (fe.Line != tt.line || !strings.HasPrefix(fe.Error(), "g.yaml:")) {
						t.Errorf("at line %d, want %d: %v", fe.Line, tt.line, fe)
					}
					return
				}
			}
			t.Errorf("no %v error containing %q in:\n%v", tt.reason, tt.text, err)
		})
	}
}

func FuzzPortRange(f *testing.F) {
	for _, s := range []string{"80", "8000-8099", "0", "65535-65535", "1-", "-5", " 7 - 9 ", "99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r PortRange
		if err := r.UnmarshalText([]byte(s)); err != nil {
			if !errors.Is(err, ErrValue) {
				t.Fatalf("%q: %v does not wrap ErrValue", s, err)
			}
			return
		}
		if r.Lo == 0 || r.Hi < r.Lo {
			t.Fatalf("%q parsed to %v", s, r)
		}
		var back PortRange
		if err := back.UnmarshalText([]byte(r.String())); err != nil || back != r {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, r, r.String(), back, err)
		}
	})
}

// TestGroupConfigInGo: a Config built in Go may set vip (and port) with vips (and ports)
// when they agree; Normalize fills vip and port from the lists.
func TestGroupConfigInGo(t *testing.T) {
	a, b := netip.MustParseAddr("198.19.0.10"), netip.MustParseAddr("198.19.0.11")
	mk := func(vip netip.Addr, port uint16) *Config {
		return &Config{Interfaces: []Interface{{Name: "eth0"}}, Services: []Service{{Name: "g", VIP: vip, Port: port,
			VIPs: []netip.Addr{a, b}, Ports: []PortRange{{80, 80}, {8000, 8009}},
			Backends: []Backend{{Address: netip.MustParseAddr("198.18.0.11")}}}}}
	}
	for _, c := range []struct {
		vip  netip.Addr
		port uint16
		ok   bool
	}{{netip.Addr{}, 0, true}, {b, 8005, true}, {netip.MustParseAddr("198.19.0.12"), 80, false}, {a, 81, false}} {
		cfg := mk(c.vip, c.port)
		cfg.Normalize()
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("vip %v port %d: %v", c.vip, c.port, err)
		}
		if c.ok && (!cfg.Services[0].VIP.IsValid() || cfg.Services[0].Port == 0) {
			t.Errorf("vip %v port %d: normalized to %v %d", c.vip, c.port, cfg.Services[0].VIP, cfg.Services[0].Port)
		}
	}
}

// TestGroupConfigRoundTrip: Marshal (xlb ctl save) writes a group, its persistence,
// one_packet, slow_start and conn_table so that Parse reads the same configuration back.
func TestGroupConfigRoundTrip(t *testing.T) {
	c, err := Parse("g.yaml", []byte(groupYAML))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(c, "")
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("saved.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	w, b := &c.Services[0], &back.Services[0]
	if !slices.Equal(w.VIPs, b.VIPs) || !slices.Equal(w.Ports, b.Ports) || w.SchedPersistence() != b.SchedPersistence() ||
		w.SlowStart != b.SlowStart || !back.Services[1].OnePacket || !c.ConnTable.Equal(back.ConnTable) {
		t.Errorf("round trip changed the configuration:\n%s", out)
	}
}
