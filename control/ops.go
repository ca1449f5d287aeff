package control

import (
	"fmt"
	"net/netip"

	"github.com/xlb-dev/xlb/config"
)

// backendLocked finds a backend by service name and backend name, ID or
// address.
func (c *Controller) backendLocked(service, backend string) (*svcState, *beState, error) {
	s := c.byName[service]
	if s == nil {
		return nil, nil, fmt.Errorf("service %q: %w", service, ErrNotFound)
	}
	for _, b := range s.backends {
		if b.name == backend || fmt.Sprint(b.id) == backend || b.addr.String() == backend ||
			(b.port != 0 && netip.AddrPortFrom(b.addr, b.port).String() == backend) {
			return s, b, nil
		}
	}
	return nil, nil, fmt.Errorf("service %q backend %q: %w", service, backend, ErrNotFound)
}

// SetWeight sets a backend's weight (0 drains it) until a reload changes
// its configured weight, and publishes the result.
func (c *Controller) SetWeight(service, backend string, w uint32) error {
	if w > config.MaxWeight {
		return fmt.Errorf("weight %d: %w: above %d", w, config.ErrValue, config.MaxWeight)
	}
	return c.change(service, backend, "weight", func(b *beState) {
		b.weight, b.overWeight = w, w != b.cfgWeight
	})
}

// Drain sets a backend's weight to 0: no new flows, existing flows stay.
func (c *Controller) Drain(service, backend string) error {
	return c.SetWeight(service, backend, 0)
}

// Enable puts a disabled backend back (it still needs to be healthy).
func (c *Controller) Enable(service, backend string) error {
	return c.change(service, backend, "enable", func(b *beState) {
		b.disabled, b.overDisabled = false, b.cfgDisabled
	})
}

// Disable takes a backend out as if it were down: its flows are
// rescheduled on their next packet.
func (c *Controller) Disable(service, backend string) error {
	return c.change(service, backend, "disable", func(b *beState) {
		b.disabled, b.overDisabled = true, !b.cfgDisabled
	})
}

func (c *Controller) change(service, backend, what string, fn func(*beState)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.closed {
		return fmt.Errorf("control: %s: %w", what, ErrClosed)
	}
	_, b, err := c.backendLocked(service, backend)
	if err != nil {
		return err
	}
	fn(b)
	c.log.Info("backend changed", "service", service, "backend", b.name, "change", what,
		"weight", b.weight, "disabled", b.disabled)
	return c.publishLocked(what + " " + service + "/" + b.name)
}
