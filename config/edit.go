package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Runtime changes (ipvsadm -A/-E/-D/-a/-e/-d): a service or backend written in
// YAML or JSON (JSON is YAML) is decoded by the same decoder as the file, put
// into a copy of the running configuration, and the whole copy is validated by
// Validate, so a change is refused with the same reasons as the same mistake in
// the file. Errors about the changed service or backend name the request (src)
// and the line in it, with paths relative to what the request wrote.

// Clone returns a deep copy of c (the positions read from its file included):
// changing the copy, Normalize included, leaves c as it was.
func (c *Config) Clone() *Config {
	v := deepCopy(reflect.ValueOf(c).Elem())
	out := v.Addr().Interface().(*Config)
	return out
}

// deepCopy returns a copy of v that shares no pointer, slice or map with it
// (unexported fields are copied as values: the positions' maps are never
// written after decoding, so they may be shared).
func deepCopy(v reflect.Value) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			out.Set(deepCopy(v.Elem()).Addr())
		}
	case reflect.Slice:
		if !v.IsNil() {
			s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				s.Index(i).Set(deepCopy(v.Index(i)))
			}
			out.Set(s)
		}
	case reflect.Map:
		if !v.IsNil() {
			m := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				m.SetMapIndex(it.Key(), deepCopy(it.Value()))
			}
			out.Set(m)
		}
	case reflect.Struct:
		out.Set(v)
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
	default:
		out.Set(v)
	}
	return out
}

// DecodeService decodes a service written in YAML or JSON. With base nil it
// is a new service; with base set, the fields the document writes replace
// base's and the others stay (ipvsadm -E): a section (health, acl, limits)
// or a list (backends, fallback) is replaced whole. src names the document in errors. It does not validate:
// WithService does, in the configuration it goes into.
func DecodeService(src string, data []byte, base *Service) (*Service, error) {
	var s Service
	if base != nil {
		s = deepCopy(reflect.ValueOf(base).Elem()).Interface().(Service)
	}
	old := s.pos
	if err := decodeDoc(src, data, reflect.ValueOf(&s).Elem()); err != nil {
		return nil, err
	}
	if base != nil {
		if s.Name != base.Name {
			return nil, ConfigErrors{{File: src, Line: s.pos.at("name"), Path: "name",
				Err: fmt.Errorf("%w: a service cannot be renamed (%q): delete it and add it again", ErrValue, s.Name)}}
		}
		s.pos = mergePos(old, s.pos)
	}
	return &s, nil
}

// DecodeBackend decodes a backend written in YAML or JSON, over base as
// DecodeService does. A backend named after its address (the default name)
// that moves to another address or port takes the new default name.
func DecodeBackend(src string, data []byte, base *Backend) (*Backend, error) {
	var b Backend
	if base != nil {
		b = deepCopy(reflect.ValueOf(base).Elem()).Interface().(Backend)
	}
	old := b.pos
	if err := decodeDoc(src, data, reflect.ValueOf(&b).Elem()); err != nil {
		return nil, err
	}
	if base != nil {
		moved := b.Address != base.Address || b.Port != base.Port
		if moved && !b.pos.has("name") && base.Name == defaultBackendName(base) {
			b.Name = ""
		}
		b.pos = mergePos(old, b.pos)
	}
	return &b, nil
}

func defaultBackendName(b *Backend) string {
	if b.Port != 0 {
		return netip.AddrPortFrom(b.Address, b.Port).String()
	}
	return b.Address.String()
}

// mergePos keeps the fields of old that the document did not write, at line
// 0 (they came from elsewhere), so Normalize and Validate still see them as
// written.
func mergePos(old, cur pos) pos {
	out := pos{line: cur.line, fields: map[string]int{}}
	for f := range old.fields {
		out.fields[f] = 0
	}
	for f, l := range cur.fields {
		out.fields[f] = l
	}
	return out
}

// decodeDoc decodes one YAML document into v with the file decoder's rules.
func decodeDoc(src string, data []byte, v reflect.Value) error {
	e := &errs{file: src}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			e.add(1, "", ErrMissing, "empty document")
		} else {
			e.add(yamlErrLine(err), "", ErrSyntax, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return e.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		e.add(extra.Line, "", ErrSyntax, "more than one YAML document")
		return e.err()
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		e.add(root.Line, "", ErrType, "want a mapping, got %s", describe(root))
		return e.err()
	}
	// A section the document writes (health, acl, limits, a list) replaces the one in v
	// whole: merged, a health check changed from http to tcp would keep http's path.
	fields := fieldsOf(v.Type())
	for i := 0; i+1 < len(root.Content); i += 2 {
		if idx, ok := fields[root.Content[i].Value]; ok {
			switch f := v.FieldByIndex(idx); f.Kind() {
			case reflect.Struct, reflect.Slice, reflect.Pointer, reflect.Map:
				if f.Type() != addrType && f.Type() != prefixType {
					f.SetZero()
				}
			}
		}
	}
	d := &decoder{errs: e, failed: map[string]bool{}, budget: max(minNodeBudget, nodesPerByte*len(data))}
	d.value(root, v, "")
	return e.err()
}

// ErrNoService and ErrNoBackend are returned by the edits for a service or
// backend the configuration does not have.
var (
	ErrNoService = errors.New("no such service")
	ErrNoBackend = errors.New("no such backend")
)

// ServiceIndex returns the index of the service named name, or -1.
func (c *Config) ServiceIndex(name string) int {
	return slices.IndexFunc(c.Services, func(s Service) bool { return s.Name == name })
}

// BackendIndex returns where the backend of service s named backend (its
// name, or its address, or address:port) is: in Fallback when fallback is
// true, at index i; i is -1 when there is none.
func (s *Service) BackendIndex(backend string) (i int, fallback bool) {
	for _, fb := range []bool{false, true} {
		list := s.Backends
		if fb {
			list = s.Fallback
		}
		for j := range list {
			b := &list[j]
			if b.Name == backend || b.Address.String() == backend ||
				(b.Port != 0 && netip.AddrPortFrom(b.Address, b.Port).String() == backend) {
				return j, fb
			}
		}
	}
	return -1, false
}

// WithService returns a copy of c with s in place of the service named s.Name,
// or added at the end when c has none of that name; normalised and validated.
// Errors about s name src and paths inside s.
func (c *Config) WithService(s *Service, src string) (*Config, error) {
	n := c.Clone()
	i := n.ServiceIndex(s.Name)
	if i < 0 {
		i = len(n.Services)
		n.Services = append(n.Services, Service{})
	}
	n.Services[i] = deepCopy(reflect.ValueOf(s).Elem()).Interface().(Service)
	return n, n.check(fmt.Sprintf("services[%d]", i), src)
}

// WithoutService returns a copy of c without the service named name.
func (c *Config) WithoutService(name string) (*Config, error) {
	i := c.ServiceIndex(name)
	if i < 0 {
		return nil, fmt.Errorf("service %q: %w", name, ErrNoService)
	}
	n := c.Clone()
	n.Services = slices.Delete(n.Services, i, i+1)
	return n, n.check("", "")
}

// WithBackend returns a copy of c with b in service's backends: in place of
// the backend named old (name or address), or added at the end of the
// backends when old is "".
func (c *Config) WithBackend(service, old string, b *Backend, src string) (*Config, error) {
	n := c.Clone()
	i := n.ServiceIndex(service)
	if i < 0 {
		return nil, fmt.Errorf("service %q: %w", service, ErrNoService)
	}
	s := &n.Services[i]
	nb := deepCopy(reflect.ValueOf(b).Elem()).Interface().(Backend)
	path := ""
	if old == "" {
		s.Backends = append(s.Backends, nb)
		path = fmt.Sprintf("services[%d].backends[%d]", i, len(s.Backends)-1)
	} else {
		j, fb := s.BackendIndex(old)
		switch {
		case j < 0:
			return nil, fmt.Errorf("service %q backend %q: %w", service, old, ErrNoBackend)
		case fb:
			s.Fallback[j] = nb
			path = fmt.Sprintf("services[%d].fallback[%d]", i, j)
		default:
			s.Backends[j] = nb
			path = fmt.Sprintf("services[%d].backends[%d]", i, j)
		}
	}
	return n, n.check(path, src)
}

// WithoutBackend returns a copy of c without the backend of service named
// backend (name or address).
func (c *Config) WithoutBackend(service, backend string) (*Config, error) {
	n := c.Clone()
	i := n.ServiceIndex(service)
	if i < 0 {
		return nil, fmt.Errorf("service %q: %w", service, ErrNoService)
	}
	s := &n.Services[i]
	j, fb := s.BackendIndex(backend)
	switch {
	case j < 0:
		return nil, fmt.Errorf("service %q backend %q: %w", service, backend, ErrNoBackend)
	case fb:
		s.Fallback = slices.Delete(s.Fallback, j, j+1)
	default:
		s.Backends = slices.Delete(s.Backends, j, j+1)
	}
	return n, n.check(fmt.Sprintf("services[%d]", i), "")
}

// check normalises and validates an edited configuration. Errors under path
// (the edited element) are told relative to it and name src.
func (c *Config) check(path, src string) error {
	for i := range c.Services {
		if s := &c.Services[i]; s.shareDefaulted() {
			s.TableShare = 0 // its default depends on the number of services: again
		}
	}
	c.Normalize()
	err := c.Validate()
	var ce ConfigErrors
	if !errors.As(err, &ce) || path == "" || src == "" {
		return err
	}
	out := make(ConfigErrors, len(ce))
	for i, fe := range ce {
		f := *fe
		if rest, ok := strings.CutPrefix(f.Path, path); ok && (rest == "" || rest[0] == '.') {
			f.File, f.Path = src, strings.TrimPrefix(rest, ".")
		}
		out[i] = &f
	}
	return out
}

// shareDefaulted reports whether the service's table_share was filled by Normalize rather
// than written (in a file or a request): its default depends on how many services there
// are, so an edit computes it again and Marshal leaves it out.
func (s *Service) shareDefaulted() bool {
	return s.pos.line > 0 && !s.pos.has("table_share")
}
