package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/health"
)

// Defaults of the VRRP tracking fields.
const (
	DefaultNotifyTimeout  = 10 * time.Second
	DefaultScriptInterval = time.Second
)

// Notify is the programs an instance (or a sync group) runs on its state changes, as
// keepalived's notify_master, notify_backup, notify_fault, notify_stop and notify. Each is a
// command (program and arguments, no shell: give ["/bin/sh", "-c", "..."] for one) run like
// an exec health check: its own process group, killed at Timeout, a minimal environment,
// optionally as User. Any gets keepalived's four arguments appended: INSTANCE or GROUP, the
// name, the new state (MASTER, BACKUP, FAULT or STOP) and the priority.
type Notify struct {
	Master []string `yaml:"master"`
	Backup []string `yaml:"backup"`
	Fault  []string `yaml:"fault"`
	Stop   []string `yaml:"stop"`
	Any    []string `yaml:"any"`
	// User runs the programs as this user. Default: xlb's own.
	User string `yaml:"user"`
	// Timeout kills a program still running after it. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Track is a tracked script (by its vrrp_scripts name) or interface: while it fails, a
// negative Weight lowers the instance's priority by that much, a positive one is added while
// it succeeds, and 0 puts the instance in fault. For a script, 0 means the script's own
// weight.
type Track struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight"`
}

// VRRPScript is a program run every Interval whose exit status tracks something
// (keepalived's vrrp_script): 0 succeeds, anything else (or the Timeout) fails; Rise
// successes or Fall failures in a row change its state. It runs like an exec health check.
type VRRPScript struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	// Interval between runs (default 1s); Timeout kills a run (default: Interval).
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Weight is the default weight of the track_scripts naming it (0: fault).
	Weight int `yaml:"weight"`
	// Rise and Fall default to 1.
	Rise int    `yaml:"rise"`
	Fall int    `yaml:"fall"`
	User string `yaml:"user"`

	pos pos
}

// VRRPSyncGroup is instances that change state together (keepalived's vrrp_sync_group):
// when one becomes master the others do, when one leaves master they resign, and while one
// is in fault none of them takes over.
type VRRPSyncGroup struct {
	Name      string   `yaml:"name"`
	Instances []string `yaml:"instances"`
	Notify    *Notify  `yaml:"notify"`

	pos pos
}

func (s *VRRPScript) setPos(p pos)    { s.pos = p }
func (g *VRRPSyncGroup) setPos(p pos) { g.pos = p }

// Instances returns the virtual routers: the vrrp section (if any) and the vrrp_instances.
func (c *Config) Instances() []*VRRP {
	var out []*VRRP
	if c.VRRP != nil {
		out = append(out, c.VRRP)
	}
	for i := range c.VRRPInstances {
		out = append(out, &c.VRRPInstances[i])
	}
	return out
}

// Script returns the vrrp_script named name, or nil.
func (c *Config) Script(name string) *VRRPScript {
	for i := range c.VRRPScripts {
		if c.VRRPScripts[i].Name == name {
			return &c.VRRPScripts[i]
		}
	}
	return nil
}

func (c *Config) normalizeVRRPTracking() {
	if c.VRRP != nil && c.VRRP.Name == "" {
		c.VRRP.Name = "vrrp"
	}
	for _, v := range c.Instances() {
		v.Notify.normalize()
	}
	for i := range c.VRRPSyncGroups {
		c.VRRPSyncGroups[i].Notify.normalize()
	}
	for i := range c.VRRPScripts {
		s := &c.VRRPScripts[i]
		s.Interval = orDefault(s.Interval, DefaultScriptInterval)
		s.Timeout = orDefault(s.Timeout, s.Interval)
		s.Rise = orDefault(s.Rise, 1)
		s.Fall = orDefault(s.Fall, 1)
	}
}

func (n *Notify) normalize() {
	if n != nil {
		n.Timeout = orDefault(n.Timeout, DefaultNotifyTimeout)
	}
}

// validateTracking checks instance names, tracks, scripts, notify and sync groups.
func (c *Config) validateTracking(e *errs) {
	names := map[string]string{}
	vrids := map[string]string{}
	vips := map[string]string{}
	for i, v := range c.Instances() {
		p := instancePath(c, i)
		switch prev, dup := names[v.Name]; {
		case v.Name == "":
			e.add(v.pos.line, p+".name", ErrMissing, "an instance in vrrp_instances needs a name")
		case dup:
			e.add(v.pos.at("name"), p+".name", ErrDuplicate, "instance name %q already used by %s", v.Name, prev)
		}
		names[v.Name] = p
		// One VRID per host: it names the instance's crash-guard table too.
		if key := fmt.Sprint(v.VirtualRouterID); v.VirtualRouterID != 0 {
			if prev, dup := vrids[key]; dup {
				e.add(v.pos.at("virtual_router_id"), p+".virtual_router_id", ErrDuplicate,
					"virtual_router_id %d already used by %s", v.VirtualRouterID, prev)
			}
			vrids[key] = p
		}
		for _, a := range v.VIPs {
			if prev, dup := vips[a.String()]; dup && prev != p {
				e.add(v.pos.at("vips"), p+".vips", ErrDuplicate, "VIP %s already held by %s", a, prev)
			}
			vips[a.String()] = p
		}
		for j, tr := range v.TrackScripts {
			tp := fmt.Sprintf("%s.track_scripts[%d]", p, j)
			if c.Script(tr.Name) == nil {
				e.add(v.pos.at("track_scripts"), tp, ErrValue, "no vrrp_scripts entry named %q", tr.Name)
			}
			checkWeight(e, v.pos.at("track_scripts"), tp, tr.Weight)
		}
		for j, tr := range v.TrackInterfaces {
			tp := fmt.Sprintf("%s.track_interfaces[%d]", p, j)
			if tr.Name == "" || len(tr.Name) > 15 || strings.ContainsAny(tr.Name, "/ \t\n") {
				e.add(v.pos.at("track_interfaces"), tp, ErrValue, "%q is not an interface name", tr.Name)
			}
			checkWeight(e, v.pos.at("track_interfaces"), tp, tr.Weight)
		}
		v.Notify.validate(e, v.pos.at("notify"), p+".notify")
	}
	c.validateScripts(e)
	c.validateSyncGroups(e, names)
}

func checkWeight(e *errs, line int, p string, w int) {
	if w < -254 || w > 254 {
		e.add(line, p+".weight", ErrValue, "weight %d out of -254..254", w)
	}
}

func (n *Notify) validate(e *errs, line int, p string) {
	if n == nil {
		return
	}
	for f, cmd := range map[string][]string{"master": n.Master, "backup": n.Backup, "fault": n.Fault, "stop": n.Stop, "any": n.Any} {
		if cmd != nil && (len(cmd) == 0 || cmd[0] == "") {
			e.add(line, p+"."+f, ErrValue, "an empty command")
		}
	}
	if n.Timeout < 0 {
		e.add(line, p+".timeout", ErrValue, "timeout must be positive")
	}
	if err := health.CheckUser(n.User); err != nil {
		e.add(line, p+".user", ErrValue, "%v", err)
	}
}

func (c *Config) validateScripts(e *errs) {
	seen := map[string]int{}
	for i := range c.VRRPScripts {
		s := &c.VRRPScripts[i]
		p := fmt.Sprintf("vrrp_scripts[%d]", i)
		if s.Name == "" {
			e.add(s.pos.line, p+".name", ErrMissing, "a vrrp script needs a name")
		} else if prev, dup := seen[s.Name]; dup {
			e.add(s.pos.at("name"), p+".name", ErrDuplicate, "script name %q already used on line %d", s.Name, prev)
		}
		seen[s.Name] = s.pos.line
		if len(s.Command) == 0 || s.Command[0] == "" {
			e.add(s.pos.at("command"), p+".command", ErrMissing, "a vrrp script needs a command")
		}
		switch {
		case s.Interval <= 0:
			e.add(s.pos.at("interval"), p+".interval", ErrValue, "interval must be positive")
		case s.Timeout <= 0 || s.Timeout > s.Interval:
			e.add(s.pos.at("timeout"), p+".timeout", ErrValue, "need 0 < timeout (%v) <= interval (%v)", s.Timeout, s.Interval)
		}
		if s.Rise < 1 || s.Fall < 1 {
			e.add(s.pos.line, p, ErrValue, "rise and fall must be >= 1")
		}
		checkWeight(e, s.pos.at("weight"), p, s.Weight)
		if err := health.CheckUser(s.User); err != nil {
			e.add(s.pos.at("user"), p+".user", ErrValue, "%v", err)
		}
	}
}

func (c *Config) validateSyncGroups(e *errs, instances map[string]string) {
	member := map[string]string{}
	for i := range c.VRRPSyncGroups {
		g := &c.VRRPSyncGroups[i]
		p := fmt.Sprintf("vrrp_sync_groups[%d]", i)
		if g.Name == "" {
			e.add(g.pos.line, p+".name", ErrMissing, "a sync group needs a name")
		}
		if len(g.Instances) == 0 {
			e.add(g.pos.at("instances"), p+".instances", ErrMissing, "a sync group needs instances")
		}
		for _, n := range g.Instances {
			if _, ok := instances[n]; !ok {
				e.add(g.pos.at("instances"), p+".instances", ErrValue, "no instance named %q", n)
			}
			if prev, dup := member[n]; dup {
				e.add(g.pos.at("instances"), p+".instances", ErrDuplicate, "instance %q is already in sync group %q", n, prev)
			}
			member[n] = g.Name
		}
		g.Notify.validate(e, g.pos.at("notify"), p+".notify")
	}
}

func scriptsView(s []VRRPScript) []VRRPScript {
	out := slices.Clone(s)
	for i := range out {
		out[i].pos = pos{}
	}
	return out
}

func groupsView(g []VRRPSyncGroup) []VRRPSyncGroup {
	out := slices.Clone(g)
	for i := range out {
		out[i].pos = pos{}
	}
	return out
}
