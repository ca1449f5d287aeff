package control

import (
	"context"
	"log/slog"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

// vrrpTracker runs the vrrp_scripts (as exec checks with rise and fall) and watches the
// tracked interfaces, and sets each instance's priority and fault from them: a failing
// track with weight 0 puts the instance in fault; a negative weight is added while it
// fails, a positive one while it succeeds (keepalived's rules).
type vrrpTracker struct {
	cfg   *config.Config
	nodes []*VRRPNode
	log   *slog.Logger

	mu     sync.Mutex
	failed map[string]bool // "script:NAME" / "interface:NAME" -> failing
	mon    *health.Monitor
	wg     sync.WaitGroup
}

func newVRRPTracker(cfg *config.Config, nodes []*VRRPNode, log *slog.Logger) *vrrpTracker {
	return &vrrpTracker{cfg: cfg, nodes: nodes, log: log, failed: map[string]bool{}}
}

// start reads the interfaces' states, starts the scripts and the link watch, and applies
// the initial priorities (before the routers run, so an instance can start in fault).
func (t *vrrpTracker) start(ctx context.Context) {
	scripts, links := map[string]bool{}, map[string]bool{}
	for _, v := range t.cfg.Instances() {
		for _, tr := range v.TrackScripts {
			scripts[tr.Name] = true
		}
		for _, tr := range v.TrackInterfaces {
			links[tr.Name] = true
		}
	}
	for name := range links {
		t.failed["interface:"+name] = !linkUp(name)
	}
	if len(links) > 0 {
		t.watchLinks(ctx, links)
	}
	if len(scripts) > 0 {
		t.mon = health.NewMonitor(ctx, health.Options{OnTransition: t.scriptChanged, NoStagger: true})
		for name := range scripts {
			s := t.cfg.Script(name)
			err := t.mon.Add(health.Check{ID: name, Checker: &health.Exec{Command: s.Command, User: s.User},
				Interval: s.Interval, Timeout: s.Timeout, Rise: s.Rise, Fall: s.Fall})
			if err != nil {
				t.log.Warn("vrrp script", "script", name, "err", err)
			}
		}
	}
	t.apply()
}

// wait stops the scripts and the link watch (after the context is cancelled).
func (t *vrrpTracker) wait() {
	if t.mon != nil {
		t.mon.Close()
	}
	t.wg.Wait()
}

func (t *vrrpTracker) scriptChanged(tr health.Transition) {
	t.log.Info("vrrp script state", "script", tr.ID, "state", tr.To.String(), "reason", tr.Reason)
	t.set("script:"+tr.ID, tr.To == health.StateDown)
}

func (t *vrrpTracker) set(key string, failed bool) {
	t.mu.Lock()
	changed := t.failed[key] != failed
	t.failed[key] = failed
	t.mu.Unlock()
	if changed {
		t.log.Info("vrrp track changed", "track", key, "failing", failed)
		t.apply()
	}
}

// apply sets every tracked instance's fault and priority from the tracks' states.
func (t *vrrpTracker) apply() {
	t.mu.Lock()
	defer t.mu.Unlock()
	insts := t.cfg.Instances()
	for i, v := range insts {
		if len(v.TrackScripts)+len(v.TrackInterfaces) == 0 {
			continue
		}
		fault, prio := false, int(v.Priority)
		weigh := func(key string, w int) {
			failed := t.failed[key]
			switch {
			case w == 0 && failed:
				fault = true
			case w < 0 && failed, w > 0 && !failed:
				prio += w
			}
		}
		for _, tr := range v.TrackScripts {
			w := tr.Weight
			if w == 0 {
				w = t.cfg.Script(tr.Name).Weight
			}
			weigh("script:"+tr.Name, w)
		}
		for _, tr := range v.TrackInterfaces {
			weigh("interface:"+tr.Name, tr.Weight)
		}
		n := t.nodes[i]
		if v.Priority != 255 { // the address owner's priority is not tracked (keepalived)
			n.r.SetPriority(uint8(min(max(prio, 1), 254)))
		}
		n.r.SetFault(fault)
	}
}

// linkUp reports whether interface name is up and running.
func linkUp(name string) bool {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return false
	}
	return attrsUp(l.Attrs())
}

func attrsUp(a *netlink.LinkAttrs) bool {
	if a.OperState == netlink.OperUp {
		return true
	}
	// Interfaces without carrier reporting (dummy, some tunnels) say unknown while up.
	return a.OperState == netlink.OperUnknown && a.RawFlags&1 != 0 && a.RawFlags&0x40 != 0 // IFF_UP, IFF_RUNNING
}

// watchLinks follows the tracked interfaces' states through netlink until ctx ends.
func (t *vrrpTracker) watchLinks(ctx context.Context, links map[string]bool) {
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(ch, done); err != nil {
		t.log.Warn("vrrp: cannot watch the tracked interfaces", "err", err)
		close(done)
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			close(done)
			go func() { // the subscription closes ch once it has seen done
				for range ch {
				}
			}()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-ch:
				if !ok {
					return
				}
				name := u.Link.Attrs().Name
				if links[name] {
					up := attrsUp(u.Link.Attrs()) && u.Header.Type != 17 // RTM_DELLINK
					t.log.Debug("vrrp tracked interface", "interface", name, "up", up, "oper", u.Link.Attrs().OperState)
					t.set("interface:"+name, !up)
				}
			}
		}
	}()
}
