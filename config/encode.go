package config

import (
	"bytes"
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes c as YAML that Parse reads back into the same configuration:
// the running configuration of `xlb ctl save`. Every field the decoder knows is
// written in its own notation (durations like 2s, addresses, enumerated names),
// fields at their zero value are left out (the decoder's zero), except a
// service's port, which a file must state. Secrets (api.token, hash_key) are
// written as they are: treat the output like the configuration file.
// header, when not empty, becomes a comment at the top.
func Marshal(c *Config, header string) ([]byte, error) {
	n, err := encodeValue(reflect.ValueOf(c).Elem())
	if err != nil {
		return nil, err
	}
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	n.HeadComment = header
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{n}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("config: write yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: write yaml: %w", err)
	}
	return b.Bytes(), nil
}

// alwaysWritten names the fields written even at their zero value, by the
// type that holds them.
var alwaysWritten = map[reflect.Type]map[string]bool{
	reflect.TypeFor[Service](): {"port": true},
}

var textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()

// encodeValue returns the YAML node of v, or nil when v is its zero value and
// may be left out.
func encodeValue(v reflect.Value) (*yaml.Node, error) {
	if n, ok, err := encodeLeaf(v); ok {
		return n, err
	}
	scalar := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		n, err := encodeValue(v.Elem())
		if err == nil && n == nil { // a set pointer to a zero value stays set
			n = zeroNode(v.Elem())
		}
		return n, err
	case reflect.Struct:
		return encodeStruct(v)
	case reflect.Slice:
		if v.Len() == 0 {
			return nil, nil
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			n, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			if n == nil {
				n = zeroNode(v.Index(i))
			}
			seq.Content = append(seq.Content, n)
		}
		return seq, nil
	case reflect.String:
		if v.String() == "" {
			return nil, nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}, nil
	case reflect.Bool:
		if !v.Bool() {
			return nil, nil
		}
		return scalar("true"), nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Int() == 0 {
			return nil, nil
		}
		return scalar(strconv.FormatInt(v.Int(), 10)), nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() == 0 {
			return nil, nil
		}
		return scalar(strconv.FormatUint(v.Uint(), 10)), nil
	}
	return nil, fmt.Errorf("config: cannot write a %s", v.Type())
}

// encodeLeaf writes the types the decoder reads from one scalar by a parser of their own
// (addresses, prefixes, durations, enumerated values); ok is false for any other type.
func encodeLeaf(v reflect.Value) (n *yaml.Node, ok bool, err error) {
	scalar := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }
	switch v.Type() {
	case addrType:
		a := v.Interface().(netip.Addr)
		if !a.IsValid() {
			return nil, true, nil
		}
		return scalar(a.String()), true, nil
	case prefixType:
		p := v.Interface().(netip.Prefix)
		if !p.IsValid() {
			return nil, true, nil
		}
		if p.Bits() == p.Addr().BitLen() {
			return scalar(p.Addr().String()), true, nil // an address: what parsePrefix reads back
		}
		return scalar(p.String()), true, nil
	case durationType:
		if v.Int() == 0 {
			return nil, true, nil
		}
		return scalar(time.Duration(v.Int()).String()), true, nil
	}
	if v.Kind() == reflect.Pointer || !reflect.PointerTo(v.Type()).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return nil, false, nil
	}
	if v.IsZero() {
		return nil, true, nil
	}
	switch {
	case v.Type().Implements(textMarshalerType):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, true, err
		}
		return scalar(string(b)), true, nil
	case v.Type().Implements(reflect.TypeFor[fmt.Stringer]()):
		return scalar(v.Interface().(fmt.Stringer).String()), true, nil
	}
	return nil, true, fmt.Errorf("config: cannot write a %s", v.Type())
}

// zeroNode is the written form of a zero value that must be written.
func zeroNode(v reflect.Value) *yaml.Node {
	switch v.Kind() {
	case reflect.Struct:
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
	case reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: "false"}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Value: "0"}
}

// encodeStruct writes the yaml-tagged fields of v (and those of an embedded
// struct without a tag) as a mapping, in declaration order.
func encodeStruct(v reflect.Value) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	always := alwaysWritten[v.Type()]
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok && f.Anonymous && f.Type.Kind() == reflect.Struct {
			inner, err := encodeStruct(v.Field(i))
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, inner.Content...)
			continue
		}
		if !ok || tag == "-" {
			continue
		}
		if tag == "table_share" && v.CanAddr() {
			if s, ok := v.Addr().Interface().(*Service); ok && s.shareDefaulted() {
				continue
			}
		}
		n, err := encodeValue(v.Field(i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		if n == nil && always[tag] {
			n = zeroNode(v.Field(i))
		}
		if n != nil {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: tag}, n)
		}
	}
	if len(m.Content) == 0 {
		return nil, nil
	}
	return m, nil
}
