package control

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

// ReloadFile reads, validates and applies the configuration at path (the
// running one's file when path is ""). A bad file is refused with every
// error (file:line: reason) and the running configuration stays.
func (c *Controller) ReloadFile(path string) error {
	if path == "" {
		path = c.Config().File()
	}
	cfg, err := config.Load(path)
	if err != nil {
		c.noteReloadErr(err)
		return err
	}
	return c.Reload(cfg)
}

// Reload applies cfg: new services and backends are added, removed ones go,
// changed weights and health checks apply. Backends that stay keep their ID,
// health state and next hop, so flows on healthy backends stay where they
// are. A change only a restart can apply (interfaces, API) is refused with
// ErrRestartRequired, and the running configuration stays.
func (c *Controller) Reload(cfg *config.Config) error {
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		c.noteReloadErr(err)
		return err
	}
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	return c.applyConfig(cfg, "")
}

// applyConfig makes cfg (normalised and valid) the running configuration:
// a reload when change is "", else the runtime change it describes. The
// caller holds reloadMu.
func (c *Controller) applyConfig(cfg *config.Config, change string) error {
	c.mu.Lock()
	if c.closed || !c.started {
		c.mu.Unlock()
		return fmt.Errorf("control: reload: %w", ErrClosed)
	}
	if err := restartNeeded(c.cfg, cfg); err != nil {
		c.mu.Unlock()
		if change == "" {
			c.noteReloadErr(err)
		}
		return err
	}
	c.noteRuntimeLocked(change)
	prev := c.byName
	adds, replaces, removes := c.applyLocked(cfg)
	if change != "" {
		c.keepOverridesLocked(prev)
	}
	c.mu.Unlock()

	// Prober calls wait for check goroutines, whose callbacks take c.mu:
	// never make them holding it.
	for _, id := range removes {
		if m := c.metricsOf(); m != nil {
			if svc, be, ok := strings.Cut(id, "/"); ok {
				m.probe.DeleteLabelValues(svc, be)
			}
		}
		if err := c.prober.Remove(id); err != nil && !errors.Is(err, health.ErrNotFound) {
			c.log.Warn("remove health check", "check", id, "err", err)
		}
	}
	c.resolveNew(c.ctx)
	c.mu.Lock()
	why := "reload"
	if change != "" {
		why = "runtime: " + change
	} else {
		c.reloads++
	}
	err := c.publishLocked(why)
	c.mu.Unlock()
	if perr := c.startChecks(adds, replaces); perr != nil {
		// Those backends would go unprobed: say so, and fail the reload.
		c.log.Warn("health checks not started: their backends are not probed", "err", perr)
		if change == "" {
			c.noteReloadErr(perr)
		}
		err = errors.Join(err, perr)
	}
	if change != "" {
		c.log.Info("configuration changed at runtime", "change", change, "services", len(cfg.Services),
			"backends", c.numBackends(), "checks_added", len(adds), "checks_removed", len(removes))
		return err
	}
	c.warnHashKey()
	c.log.Info("configuration reloaded", "file", cfg.File(), "services", len(cfg.Services),
		"backends", c.numBackends(), "checks_added", len(adds), "checks_changed", len(replaces), "checks_removed", len(removes))
	return err
}

// startChecks hands the prober the checks a reload added or changed (a
// changed check the prober no longer has is added again) and returns what
// failed, each error naming its check.
func (c *Controller) startChecks(adds, replaces []health.Check) error {
	var errs []error
	for _, chk := range replaces {
		err := c.prober.Replace(chk)
		if errors.Is(err, health.ErrNotFound) {
			err = c.prober.Add(chk)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("control: health check %s: %w", chk.ID, err))
		}
	}
	for _, chk := range adds {
		if err := c.prober.Add(chk); err != nil {
			errs = append(errs, fmt.Errorf("control: health check %s: %w", chk.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) noteReloadErr(err error) {
	c.mu.Lock()
	c.reloadErr++
	c.lastErr = err.Error()
	c.mu.Unlock()
	c.log.Error("reload refused, the running configuration stays", "err", err)
}

// restartNeeded refuses the changes a reload cannot apply.
func restartNeeded(old, cfg *config.Config) error {
	if !reflect.DeepEqual(ifaceView(old), ifaceView(cfg)) {
		return fmt.Errorf("control: reload: %w: the interfaces changed (names, xdp_mode, zero_copy, cores or busy_poll); restart xlb to apply them", ErrRestartRequired)
	}
	if !sameAPI(&old.API, &cfg.API) {
		return fmt.Errorf("control: reload: %w: the api section changed; restart xlb to apply it", ErrRestartRequired)
	}
	if !old.VRRPEqual(cfg) {
		return fmt.Errorf("control: reload: %w: the vrrp section changed; restart xlb to apply it", ErrRestartRequired)
	}
	if !old.Sync.Equal(cfg.Sync) {
		return fmt.Errorf("control: reload: %w: the sync section changed; restart xlb to apply it", ErrRestartRequired)
	}
	if !old.BGP.Equal(cfg.BGP) {
		return fmt.Errorf("control: reload: %w: the bgp section changed; restart xlb to apply it", ErrRestartRequired)
	}
	if !old.ConnTable.Equal(cfg.ConnTable) {
		return fmt.Errorf("control: reload: %w: the conn_table section changed (the tables are made at start); restart xlb to apply it", ErrRestartRequired)
	}
	return nil
}

// sameAPI compares what the API's listeners were opened with (the files' contents are not
// compared: a renewed certificate is picked up by the listener itself).
func sameAPI(a, b *config.API) bool {
	return a.Listen == b.Listen && a.Token == b.Token && a.TokenFile == b.TokenFile && a.Socket == b.Socket &&
		a.SocketGroup == b.SocketGroup && a.TLSCert == b.TLSCert && a.TLSKey == b.TLSKey && a.ClientCA == b.ClientCA
}

func ifaceView(c *config.Config) []config.Interface {
	out := make([]config.Interface, len(c.Interfaces))
	for i, in := range c.Interfaces {
		out[i] = config.Interface{Name: in.Name, XDPMode: in.XDPMode, ZeroCopy: in.ZeroCopy, Cores: in.Cores,
			BusyPoll: in.BusyPoll}
	}
	return out
}

// applyLocked makes cfg the running configuration's state, keeping what
// survives, and returns the health checks to add, replace and remove.
func (c *Controller) applyLocked(cfg *config.Config) (adds, replaces []health.Check, removes []string) {
	var ch checkChanges
	oldBy := c.byName
	c.byName = map[string]*svcState{}
	c.services = c.services[:0:0]
	byCheck := map[string]*beState{}
	for i := range cfg.Services {
		sc := cfg.Services[i]
		st := sc.Scheduler
		idx, ok := c.indexes[sc.Name]
		if !ok {
			idx = c.newIndex()
			c.indexes[sc.Name] = idx
		}
		s := &svcState{cfg: sc, index: idx, strategy: st, policy: policyOf(&sc)}
		old := map[beKey]*beState{}
		if o := oldBy[sc.Name]; o != nil {
			s.ss = o.ss // slow start's memory: what was up, what is ramping
			if o.strategy == st {
				s.built, s.inputs = o.built, o.inputs // reused if the inputs stay the same
			}
			for _, b := range o.backends {
				old[b.key] = b
			}
		}
		for _, group := range []struct {
			list     []config.Backend
			fallback bool
		}{{sc.Backends, false}, {sc.Fallback, true}} {
			for j := range group.list {
				cb := &group.list[j]
				key := beKey{sc.Name, cb.Address, sc.TargetPort(cb)}
				checkID := sc.Name + "/" + cb.Name
				b := old[key]
				if b == nil { // new: an ID never given before (nextID only grows)
					b = &beState{id: c.nextID, key: key, health: health.StateUnknown, since: time.Now()}
					c.nextID++
				}
				b.configure(cb, group.fallback)
				b.throughVIP = sc.HealthOf(cb).AnyThroughVIP()
				chks, specs, err := checksFor(&sc, cb, checkID, b.id)
				if err != nil { // validated already: a CA file gone since, say
					c.log.Warn("health check", "backend", checkID, "err", err)
				}
				c.syncChecks(b, chks, specs, &ch)
				for _, id := range b.checkIDs() {
					byCheck[id] = b
				}
				s.backends = append(s.backends, b)
			}
		}
		c.services = append(c.services, s)
		c.byName[sc.Name] = s
	}
	for id, b := range c.byCheck {
		if byCheck[id] != b {
			ch.removes = append(ch.removes, id)
		}
	}
	for name := range c.indexes {
		if _, ok := c.byName[name]; !ok {
			delete(c.indexes, name)
		}
	}
	c.byCheck = byCheck
	c.cfg = cfg
	slices.Sort(ch.removes)
	return ch.adds, ch.replaces, slices.Compact(ch.removes)
}

// checkChanges is what applying a configuration asks of the prober.
type checkChanges struct {
	adds, replaces []health.Check
	removes        []string
}
