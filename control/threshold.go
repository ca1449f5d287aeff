package control

import (
	"context"
	"time"
)

// ThresholdInterval is how often the controller compares the backends' connections with
// their thresholds. Between two looks a backend can take the new flows of one interval
// beyond its upper threshold.
const ThresholdInterval = 100 * time.Millisecond

// watchThresholds applies the backends' connection thresholds as IPVS does: a backend
// with upper_threshold stops getting new flows once it holds that many connections
// (summed over the workers' connection tables) and gets them again below lower_threshold
// (or 3/4 of the upper). Its existing flows stay. Runs until ctx ends.
func (c *Controller) watchThresholds(ctx context.Context) {
	t := time.NewTicker(ThresholdInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.checkThresholds()
	}
}

// checkThresholds updates every backend's overload state and publishes on a change.
func (c *Controller) checkThresholds() {
	c.mu.Lock()
	anyThreshold := false
	for _, s := range c.services {
		for _, b := range s.backends {
			anyThreshold = anyThreshold || b.upper > 0
		}
	}
	c.mu.Unlock()
	if !anyThreshold {
		return
	}
	stats := c.flowStats() // without c.mu: it reads the data path
	if stats == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	changed := ""
	for _, s := range c.services {
		st := stats[s.cfg.Name]
		if st == nil {
			continue
		}
		for _, b := range s.backends {
			for i := range st.Backends {
				if st.Backends[i].ID == b.id {
					b.active = st.Backends[i].Active
				}
			}
			if b.upper == 0 {
				continue
			}
			over := b.overloaded
			switch {
			case !over && b.active >= uint64(b.upper):
				over = true
			case over && b.lower > 0 && b.active < uint64(b.lower):
				over = false
			case over && b.lower == 0 && b.active*4 < uint64(b.upper)*3:
				over = false
			}
			if over != b.overloaded {
				b.overloaded = over
				c.log.Info("backend threshold", "service", s.cfg.Name, "backend", b.name, "overloaded", over,
					"connections", b.active, "upper", b.upper, "lower", b.lower)
				changed = s.cfg.Name + "/" + b.name
			}
		}
	}
	if changed != "" {
		if err := c.publishLocked("threshold " + changed); err != nil {
			c.log.Warn("publish after a threshold change", "err", err)
		}
	}
}
