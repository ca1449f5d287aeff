package control

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/config"
)

// Runtime changes (ipvsadm -A/-E/-D/-a/-e/-d). A change is a document (YAML or JSON) of
// one service or backend: it is decoded by the configuration's decoder into a copy of the
// running configuration, the whole copy is validated as a file would be (same reasons;
// errors name the request and its line), and the copy is applied like a reload: backends
// that stay keep their ID, health and next hop, so flows on untouched backends stay where
// they are. Each change is logged and remembered until the configuration is next read from
// its file.
//
// A reload (SIGHUP, xlb ctl reload, Reload) replaces the running configuration with the
// file's: the file wins, and the runtime changes made since it was last read are dropped,
// each named in a warning. `xlb ctl save` first keeps them (SaveYAML).

// requestSrc names a request's document in errors.
const requestSrc = "request"

// AddService adds the service doc describes (ipvsadm -A).
func (c *Controller) AddService(doc []byte) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		s, err := config.DecodeService(requestSrc, doc, nil)
		if err != nil {
			return nil, "", err
		}
		if cur.ServiceIndex(s.Name) >= 0 {
			return nil, "", config.ConfigErrors{{File: requestSrc, Path: "name",
				Err: fmt.Errorf("%w: service name %q already used (edit it, or delete it first)", config.ErrDuplicate, s.Name)}}
		}
		n, err := cur.WithService(s, requestSrc)
		return n, "add service " + s.Name, err
	})
}

// EditService changes the fields of service name that doc writes (ipvsadm -E); the others
// stay. A list written (backends, fallback) replaces the running one.
func (c *Controller) EditService(name string, doc []byte) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		i := cur.ServiceIndex(name)
		if i < 0 {
			return nil, "", fmt.Errorf("service %q: %w", name, ErrNotFound)
		}
		s, err := config.DecodeService(requestSrc, doc, &cur.Services[i])
		if err != nil {
			return nil, "", err
		}
		n, err := cur.WithService(s, requestSrc)
		return n, "edit service " + name, err
	})
}

// DeleteService removes service name (ipvsadm -D): its flows are no longer forwarded.
func (c *Controller) DeleteService(name string) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		n, err := cur.WithoutService(name)
		return n, "delete service " + name, err
	})
}

// AddBackend adds the backend doc describes to service (ipvsadm -a).
func (c *Controller) AddBackend(service string, doc []byte) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		b, err := config.DecodeBackend(requestSrc, doc, nil)
		if err != nil {
			return nil, "", err
		}
		n, err := cur.WithBackend(service, "", b, requestSrc)
		return n, fmt.Sprintf("add backend %s to %s", b.Address, service), err
	})
}

// EditBackend changes the fields of a backend of service (its name or address) that doc
// writes (ipvsadm -e).
func (c *Controller) EditBackend(service, backend string, doc []byte) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		i := cur.ServiceIndex(service)
		if i < 0 {
			return nil, "", fmt.Errorf("service %q: %w", service, ErrNotFound)
		}
		s := &cur.Services[i]
		j, fb := s.BackendIndex(backend)
		if j < 0 {
			return nil, "", fmt.Errorf("service %q backend %q: %w", service, backend, ErrNotFound)
		}
		base := &s.Backends[j]
		if fb {
			base = &s.Fallback[j]
		}
		b, err := config.DecodeBackend(requestSrc, doc, base)
		if err != nil {
			return nil, "", err
		}
		n, err := cur.WithBackend(service, backend, b, requestSrc)
		return n, fmt.Sprintf("edit backend %s of %s", backend, service), err
	})
}

// DeleteBackend removes a backend of service (its name or address) (ipvsadm -d): its flows
// are rescheduled on their next packet, the others stay.
func (c *Controller) DeleteBackend(service, backend string) error {
	return c.edit(func(cur *config.Config) (*config.Config, string, error) {
		n, err := cur.WithoutBackend(service, backend)
		return n, fmt.Sprintf("delete backend %s of %s", backend, service), err
	})
}

// edit applies the configuration fn makes of the running one, as the runtime change it
// names. Nothing changes when fn or the application fails.
func (c *Controller) edit(fn func(cur *config.Config) (*config.Config, string, error)) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	n, change, err := fn(c.Config())
	if err != nil {
		switch {
		case errors.Is(err, config.ErrNoService), errors.Is(err, config.ErrNoBackend):
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		c.log.Warn("runtime change refused", "err", err)
		return err
	}
	return c.applyConfig(n, change)
}

// noteRuntimeLocked records runtime change (when not "") or, for a reload, drops the
// recorded ones with a warning naming them.
func (c *Controller) noteRuntimeLocked(change string) {
	if change != "" {
		c.runtime = append(c.runtime, change)
		return
	}
	if len(c.runtime) > 0 {
		c.log.Warn("reload: the file replaces the running configuration; runtime changes not in it are dropped "+
			"(xlb ctl save prints the running configuration to keep them)", "dropped", len(c.runtime),
			"changes", strings.Join(c.runtime, "; "))
		c.runtime = nil
	}
}

// RuntimeChanges returns the runtime changes made since the configuration was last read
// from its file (or given to Start or Reload), oldest first.
func (c *Controller) RuntimeChanges() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.runtime...)
}

// keepOverridesLocked carries the API's ACL overrides of the services a runtime change did
// not touch over from prev (a reload drops them; a change of another service must not).
func (c *Controller) keepOverridesLocked(prev map[string]*svcState) {
	for _, s := range c.services {
		o := prev[s.cfg.Name]
		if o == nil {
			continue
		}
		if reflect.DeepEqual(policyOf(&o.cfg), policyOf(&s.cfg)) {
			s.policy = o.policy
		}
	}
}

// SaveYAML returns the running configuration as YAML that `xlb run --check` accepts: the
// file as last read, the runtime changes since, the weights and enable/disable set through
// the API, and an ACL replaced through the API (written inline: it replaces the configured
// lists and files). It holds the configuration's secrets
// (hash_key, api.token): the API serves it only to those who may change the balancer.
func (c *Controller) SaveYAML() ([]byte, error) {
	c.mu.Lock()
	cfg := c.cfg.Clone()
	for _, s := range c.services {
		i := cfg.ServiceIndex(s.cfg.Name)
		if i < 0 {
			continue
		}
		sc := &cfg.Services[i]
		if allow, deny := sc.ACL.Lists(); !slices.Equal(allow, s.policy.Allow) || !slices.Equal(deny, s.policy.Deny) {
			sc.ACL = config.ACL{Allow: slices.Clone(s.policy.Allow), Deny: slices.Clone(s.policy.Deny)}
		}
		for _, b := range s.backends {
			j, fb := sc.BackendIndex(b.name)
			if j < 0 {
				continue
			}
			cb := &sc.Backends[j]
			if fb {
				cb = &sc.Fallback[j]
			}
			w := b.weight
			cb.Weight, cb.Disabled = &w, b.disabled
		}
	}
	changes := len(c.runtime)
	c.mu.Unlock()
	header := fmt.Sprintf("xlb configuration saved from the running daemon at %s\nread from %s, with %d runtime changes since",
		time.Now().UTC().Format(time.RFC3339), orNone(cfg.File()), changes)
	return config.Marshal(cfg, header)
}

func orNone(s string) string {
	if s == "" {
		return "(no file)"
	}
	return s
}
