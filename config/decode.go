package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// minNodeBudget and nodesPerByte bound the work of walking a document, so
// an alias bomb ("billion laughs") is refused instead of expanded: a
// document may visit max(minNodeBudget, nodesPerByte*len) nodes, far more
// than one without aliases can hold.
const (
	minNodeBudget = 10000
	nodesPerByte  = 4
)

// pos remembers where a mapping and each of its fields were in the file.
type pos struct {
	line   int
	fields map[string]int // yaml key -> line of its value
}

// at returns the line of field (or of the mapping when the field is absent).
func (p pos) at(field string) int {
	if l, ok := p.fields[field]; ok {
		return l
	}
	return p.line
}

// has reports whether field was written in the file.
func (p pos) has(field string) bool {
	_, ok := p.fields[field]
	return ok
}

type positioned interface{ setPos(pos) }

func (c *Config) setPos(p pos)    { c.pos = p }
func (i *Interface) setPos(p pos) { i.pos = p }
func (s *Service) setPos(p pos)   { s.pos = p }
func (b *Backend) setPos(p pos)   { b.pos = p }
func (h *Health) setPos(p pos)    { h.pos = p }
func (a *API) setPos(p pos)       { a.pos = p }

// Load reads, parses and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a YAML configuration, fills the defaults and
// validates it. file names the source in error messages. On error the
// result is a ConfigErrors listing every problem found with its line.
func Parse(file string, data []byte) (*Config, error) {
	cfg, d, err := decodeConfig(file, data)
	if cfg == nil || d.tooBig {
		return nil, err
	}
	cfg.Normalize()
	// Report decoding and validation errors together, leaving out what
	// validation says about a field that already failed to decode.
	var all ConfigErrors
	if derr := d.err(); derr != nil {
		all = derr.(ConfigErrors)
	}
	if verr := cfg.Validate(); verr != nil {
		for _, fe := range verr.(ConfigErrors) {
			if !d.failed[fe.Path] {
				all = append(all, fe)
			}
		}
	}
	if len(all) > 0 {
		slices.SortStableFunc(all, func(a, b *FieldError) int { return a.Line - b.Line })
		return nil, all
	}
	return cfg, nil
}

// decodeConfig turns YAML into a Config without defaults or validation.
// On a syntax error the Config is nil; otherwise the decoder holds the
// field errors found (cfg is usable, with zero values where they were).
func decodeConfig(file string, data []byte) (*Config, *decoder, error) {
	e := &errs{file: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			e.add(1, "", ErrMissing, "empty configuration")
			return nil, nil, e.err()
		}
		e.add(yamlErrLine(err), "", ErrSyntax, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, nil, e.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = yamlErrLine(err)
		}
		e.add(line, "", ErrSyntax, "more than one YAML document")
		return nil, nil, e.err()
	}
	cfg := &Config{file: file}
	d := &decoder{errs: e, failed: map[string]bool{}, lines: map[string]int{}, budget: max(minNodeBudget, nodesPerByte*len(data))}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.value(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.failed, cfg.lines = d.failed, d.lines
	return cfg, d, e.err()
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

type decoder struct {
	*errs
	nodes  int
	budget int
	tooBig bool
	failed map[string]bool // paths that did not decode
	lines  map[string]int  // prefix list items' lines
}

func (d *decoder) add(line int, path string, reason error, format string, args ...any) {
	d.failed[path] = true
	d.errs.add(line, path, reason, format, args...)
}

func (d *decoder) addErr(line int, path string, err error) {
	d.failed[path] = true
	d.errs.addErr(line, path, err)
}

var (
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	durationType = reflect.TypeFor[time.Duration]()
)

// value decodes n into v, reporting problems at path instead of stopping.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.tooBig {
		return
	}
	d.nodes++
	if d.nodes > d.budget {
		d.tooBig = true
		d.add(n.Line, path, ErrTooBig, "more than %d nodes (alias expansion?)", d.budget)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value: the default applies
	}
	if d.leaf(n, v, path) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n.Line, path, ErrType, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		prefixes := v.Type().Elem() == prefixType
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			d.value(item, s.Index(i), ip)
			if prefixes {
				d.lines[ip] = item.Line
			}
		}
		v.Set(s)
	case reflect.String:
		s, ok := d.scalar(n, path, "a string")
		if ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(n.Line, path, ErrType, "want true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.add(n.Line, path, ErrType, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		d.integer(n, v, path)
	default:
		d.add(n.Line, path, ErrType, "unsupported field type %s", v.Type())
	}
}

// leaf decodes the types read from one scalar by a parser of their own (an
// address, a prefix, a duration, an enumerated value) and reports whether v
// was one of them.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string) bool {
	switch v.Type() {
	case addrType:
		s, ok := d.scalar(n, path, "an IP address")
		if !ok {
			return true
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			d.add(n.Line, path, ErrValue, "%q is not an IP address", s)
			return true
		}
		v.Set(reflect.ValueOf(a.Unmap()))
		return true
	case prefixType:
		s, ok := d.scalar(n, path, "an IP address or prefix")
		if !ok {
			return true
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.add(n.Line, path, ErrValue, "%s", err.Error())
			return true
		}
		v.Set(reflect.ValueOf(p))
		return true
	case durationType:
		s, ok := d.scalar(n, path, "a duration like 500ms")
		if !ok {
			return true
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.add(n.Line, path, ErrValue, "%q is not a duration (like 500ms or 2s)", s)
			return true
		}
		v.SetInt(int64(dur))
		return true
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		// The enumerated fields parse their own names.
		s, ok := d.scalar(n, path, "a string")
		if !ok {
			return true
		}
		if err := u.UnmarshalText([]byte(s)); err != nil {
			d.addErr(n.Line, path, err)
		}
		return true
	}
	return false
}

func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.add(n.Line, path, ErrType, "want %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	var lo, hi int64
	switch v.Kind() {
	case reflect.Uint8:
		lo, hi = 0, math.MaxUint8
	case reflect.Uint16:
		lo, hi = 0, math.MaxUint16
	case reflect.Uint32:
		lo, hi = 0, math.MaxUint32
	default:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	want := fmt.Sprintf("an integer %d..%d", lo, hi)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.add(n.Line, path, ErrType, "want %s, got %s", want, describe(n))
		return
	}
	var i int64
	if err := n.Decode(&i); err != nil || i < lo || i > hi {
		d.add(n.Line, path, ErrValue, "want %s, got %s", want, n.Value)
		return
	}
	if v.CanUint() {
		v.SetUint(uint64(i))
	} else {
		v.SetInt(i)
	}
}

// mapping decodes a YAML mapping into the struct v by its yaml tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, path, ErrType, "want a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	p := pos{line: n.Line, fields: map[string]int{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, path, ErrType, "want a field name, got %s", describe(k))
			continue
		}
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		if k.Value == "<<" {
			d.add(k.Line, sub, ErrUnknownField, "merge keys are not supported")
			continue
		}
		fi, ok := fields[k.Value]
		if !ok {
			d.add(k.Line, sub, ErrUnknownField, "%q (known: %s)", k.Value, known(fields))
			continue
		}
		if prev, dup := p.fields[k.Value]; dup {
			d.add(k.Line, sub, ErrDuplicate, "field %q already set on line %d", k.Value, prev)
			continue
		}
		p.fields[k.Value] = val.Line
		d.value(val, v.FieldByIndex(fi), sub)
	}
	if pp, ok := v.Addr().Interface().(positioned); ok {
		pp.setPos(p)
	}
}

var fieldCache sync.Map // reflect.Type -> map[string][]int

// fieldsOf maps the yaml names of t's fields to their indexes; the fields of
// an embedded struct without a yaml tag (config.VRRP's ha.Config) count as
// t's own.
func fieldsOf(t reflect.Type) map[string][]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string][]int)
	}
	fields := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		switch {
		case ok && tag != "-":
			fields[tag] = []int{i}
		case !ok && f.Anonymous && f.Type.Kind() == reflect.Struct:
			for name, idx := range fieldsOf(f.Type) {
				fields[name] = append([]int{i}, idx...)
			}
		}
	}
	fieldCache.Store(t, fields)
	return fields
}

func known(fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("%q", v)
	}
	return "an unexpected node"
}

// parsePrefix accepts an address (a single-address prefix) or a prefix
// without host bits.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (want %s)", s, p.Masked())
	}
	return p, nil
}
