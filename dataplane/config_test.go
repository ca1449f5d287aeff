package dataplane

import (
	"errors"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Interfaces: []InterfaceConfig{{Name: "eth0"}}}
	d := good.withDefaults()
	if err := d.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if d.FrameSize != 4096 || d.FrameCount != 4096 || d.RingSize != 2048 || d.BatchSize != 64 ||
		d.Interfaces[0].XDPMode != "auto" || d.Interfaces[0].ZeroCopy != "auto" {
		t.Errorf("defaults: %+v", d)
	}
	for name, edit := range map[string]func(c *Config){
		"no interfaces": func(c *Config) { c.Interfaces = nil },
		"frame size":    func(c *Config) { c.FrameSize = 1500 },
		"frame count":   func(c *Config) { c.FrameCount = 1000 },
		"ring size":     func(c *Config) { c.RingSize = 4096 },
		"batch":         func(c *Config) { c.BatchSize = 65 },
		"conn table":    func(c *Config) { c.ConnTableSize = -1 },
		"no name":       func(c *Config) { c.Interfaces[0].Name = "" },
		"twice":         func(c *Config) { c.Interfaces = append(c.Interfaces, c.Interfaces[0]) },
		"xdp mode":      func(c *Config) { c.Interfaces[0].XDPMode = "offload" },
		"zero copy":     func(c *Config) { c.Interfaces[0].ZeroCopy = "yes" },
		"queues":        func(c *Config) { c.Interfaces[0].Queues = -1 },
		"cpu":           func(c *Config) { c.Interfaces[0].Cores = []int{-2} },
	} {
		c := good.withDefaults()
		edit(&c)
		if err := c.validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// New refuses a bad config before touching the system.
	if _, err := New(Config{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New(Config{}): %v", err)
	}
}

func TestCountersNames(t *testing.T) {
	seen := map[string]bool{}
	for d := range NumDrops {
		n := d.String()
		if n == "" || n == "unknown_drop" || seen[n] {
			t.Errorf("drop %d: name %q", d, n)
		}
		seen[n] = true
	}
	var a, b Counters
	a.RxPackets, a.Drops[DropNoRoute], b.Drops[DropNoRoute], b.ConnHits = 1, 2, 3, 4
	a.Add(&b)
	if a.RxPackets != 1 || a.Drops[DropNoRoute] != 5 || a.ConnHits != 4 || a.Dropped() != 5 {
		t.Errorf("add: %+v", a)
	}
}

// SetThreadedNAPI refuses an interface that sysfs shows with another index or MAC (a
// caller in another network namespace), writing nothing.
func TestSetThreadedNAPIWrongInterface(t *testing.T) {
	err := SetThreadedNAPI("lo", 987654, [6]byte{2, 0, 0, 0, 0, 9}, true)
	if !errors.Is(err, ErrSysfsNamespace) {
		t.Fatalf("err = %v", err)
	}
}
