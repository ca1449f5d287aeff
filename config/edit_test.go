package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// stripPos clears the positions of a parsed configuration, so that two
// configurations read from different text compare by content.
func stripPos(t *testing.T, c *Config) *Config {
	t.Helper()
	c = c.Clone()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if f := v.FieldByName("pos"); f.IsValid() && f.Type() == reflect.TypeFor[pos]() {
				reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().Set(reflect.ValueOf(pos{}))
			}
			if f := v.FieldByName("file"); f.IsValid() && f.Kind() == reflect.String {
				reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().SetString("")
			}
			for _, name := range []string{"failed", "lines"} {
				if f := v.FieldByName(name); f.IsValid() && f.Kind() == reflect.Map {
					reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().SetZero()
				}
			}
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
	return c
}

// TestMarshalRoundTrip writes every configuration the reference and the
// example hold and reads it back: the same configuration.
func TestMarshalRoundTrip(t *testing.T) {
	var docs []string
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, string(ex))
	ref, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range strings.Split(string(ref), "```yaml\n")[1:] {
		docs = append(docs, b[:strings.Index(b, "```")])
	}
	for i, d := range docs {
		cfg, err := Parse("in.yaml", []byte(d))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		out, err := Marshal(cfg, "saved")
		if err != nil {
			t.Fatalf("doc %d: marshal: %v", i, err)
		}
		back, err := Parse("out.yaml", out)
		if err != nil {
			t.Fatalf("doc %d: the written configuration is refused: %v\n%s", i, err, out)
		}
		if a, b := stripPos(t, cfg), stripPos(t, back); !reflect.DeepEqual(a, b) {
			t.Errorf("doc %d: round trip changed the configuration\nin:  %+v\nout: %+v\n%s", i, a, b, out)
		}
		if !strings.HasPrefix(string(out), "# saved\n") {
			t.Errorf("doc %d: header missing:\n%s", i, out)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clone()
	*c.Services[0].Backends[0].Weight = 7
	c.Services[0].Backends[1].Name = "x"
	c.Interfaces[0].Cores[0] = 9
	if *cfg.Services[0].Backends[0].Weight == 7 || cfg.Services[0].Backends[1].Name == "x" || cfg.Interfaces[0].Cores[0] == 9 {
		t.Fatal("the clone shares memory with the original")
	}
	if c.File() != cfg.File() {
		t.Fatalf("file %q, want %q", c.File(), cfg.File())
	}
}

func TestEditsValidateLikeTheFile(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The same mistake in the file and in a request: the same reason.
	bad := strings.Replace(mustRead(t, "testdata/example.yaml"), "{ address: 198.18.0.12, weight: 100 }",
		"{ address: 198.18.0.12, weight: 70000 }", 1)
	_, fileErr := Parse("x.yaml", []byte(bad))
	b, err := DecodeBackend("request", []byte(`{"address": "198.18.0.30", "weight": 70000}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, reqErr := cfg.WithBackend("web", "", b, "request")
	if fileErr == nil || reqErr == nil {
		t.Fatalf("file %v, request %v: both must be refused", fileErr, reqErr)
	}
	reason := func(err error) string {
		var ce ConfigErrors
		errors.As(err, &ce)
		return ce[0].Err.Error()
	}
	if reason(fileErr) != reason(reqErr) {
		t.Fatalf("file says %q, request says %q", reason(fileErr), reason(reqErr))
	}
	if got := reqErr.Error(); got != "request:1: weight: bad value: weight 70000 above 65535" {
		t.Fatalf("request error %q", got)
	}

	cases := []struct {
		name string
		do   func() (*Config, error)
		want error
		msg  string
	}{
		{"add service without port", func() (*Config, error) {
			s, err := DecodeService("req", []byte("name: x\nvip: 198.19.0.50\nbackends: [{address: 198.18.0.11}]\n"), nil)
			if err != nil {
				return nil, err
			}
			return cfg.WithService(s, "req")
		}, ErrMissing, "req:1: port: missing: port is required (0 means all ports)"},
		{"add duplicate service", func() (*Config, error) {
			s, _ := DecodeService("req", []byte("name: web2\nvip: 198.19.0.10\nport: 80\nbackends: [{address: 198.18.0.11}]\n"), nil)
			return cfg.WithService(s, "req")
		}, ErrDuplicate, "service tcp/198.19.0.10:80 already defined"},
		{"unknown field", func() (*Config, error) {
			return nil, second(DecodeService("req", []byte("name: x\nbogus: 1\n"), nil))
		}, ErrUnknownField, "req:2: bogus: unknown field"},
		{"rename", func() (*Config, error) {
			return nil, second(DecodeService("req", []byte("name: other\n"), &cfg.Services[0]))
		}, ErrValue, "cannot be renamed"},
		{"delete last backend", func() (*Config, error) { return cfg.WithoutBackend("tun", "198.18.0.11") },
			ErrMissing, "at least one backend is required"},
		{"no such service", func() (*Config, error) { return cfg.WithoutService("nope") }, ErrNoService, "nope"},
		{"no such backend", func() (*Config, error) { return cfg.WithoutBackend("web", "198.18.9.9") }, ErrNoBackend, "198.18.9.9"},
		{"syntax", func() (*Config, error) { return nil, second(DecodeBackend("req", []byte("{address: "), nil)) },
			ErrSyntax, "req:1:"},
		{"not a mapping", func() (*Config, error) { return nil, second(DecodeBackend("req", []byte("[1]"), nil)) },
			ErrType, "want a mapping"},
	}
	for _, c := range cases {
		_, err := c.do()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %v containing %q", c.name, err, c.want, c.msg)
		}
	}

	// Edits that are fine: -E keeps what the request does not write.
	s, err := DecodeService("req", []byte(`{"scheduler": "rr"}`), &cfg.Services[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := cfg.WithService(s, "req")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Services[0]; got.Scheduler.String() != "rr" || len(got.Backends) != 3 || got.Port != 80 {
		t.Fatalf("edited service %+v", got)
	}
	if cfg.Services[0].Scheduler.String() != "maglev" {
		t.Fatal("the edit changed the original")
	}
	b, err = DecodeBackend("req", []byte("address: 198.18.0.15\n"), &cfg.Services[0].Backends[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err = cfg.WithBackend("web", "198.18.0.11", b, "req")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Services[0].Backends[0]; got.Name != "198.18.0.15" || got.WeightOf() != 100 {
		t.Fatalf("moved backend %+v", got)
	}
}

func second[T any](_ T, err error) error { return err }

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzRuntimeEdit feeds any document to the runtime edits: it is refused with a
// ConfigErrors (or a missing service/backend), or the result validates and writes as YAML
// that Parse reads back to the same configuration.
func FuzzRuntimeEdit(f *testing.F) {
	f.Add([]byte(`{"scheduler": "rr"}`), true)
	f.Add([]byte("address: 198.18.0.40\nweight: 3\n"), false)
	f.Add([]byte("name: x\nvip: 198.19.0.50\nport: 80\nbackends: [{address: 198.18.0.11}]\n"), true)
	f.Add([]byte("a: &a [*a, *a]\n"), false)
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte, service bool) {
		var n *Config
		var err error
		if service {
			var s *Service
			if s, err = DecodeService("req", doc, &cfg.Services[0]); err == nil {
				n, err = cfg.WithService(s, "req")
			}
		} else {
			var b *Backend
			if b, err = DecodeBackend("req", doc, nil); err == nil {
				n, err = cfg.WithBackend("web", "", b, "req")
			}
		}
		if err != nil {
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) == 0 {
				t.Fatalf("error %T %v is not a non-empty ConfigErrors", err, err)
			}
			return
		}
		y, err := Marshal(n, "")
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse("out.yaml", y)
		if err != nil {
			t.Fatalf("written configuration refused: %v\n%s", err, y)
		}
		if !reflect.DeepEqual(stripPos(t, n), stripPos(t, back)) {
			t.Fatalf("round trip changed the configuration:\n%s", y)
		}
	})
}

// FuzzMarshal: every configuration Parse accepts is written as YAML that Parse reads back
// to the same configuration (what `xlb ctl save` relies on).
func FuzzMarshal(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte(base))
	f.Add([]byte(groupYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			return
		}
		y, err := Marshal(cfg, "# header")
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse("out.yaml", y)
		if err != nil {
			t.Fatalf("written configuration refused: %v\n%s", err, y)
		}
		if !reflect.DeepEqual(stripPos(t, cfg), stripPos(t, back)) {
			t.Fatalf("round trip changed the configuration:\n%s", y)
		}
	})
}

// TestRuntimeDocExample decodes the service of docs/runtime.md and adds it to the example
// configuration: the page shows what the API accepts.
func TestRuntimeDocExample(t *testing.T) {
	doc := mustRead(t, "../docs/runtime.md")
	blocks := strings.Split(doc, "```yaml\n")[1:]
	if len(blocks) != 1 {
		t.Fatalf("%d yaml blocks in docs/runtime.md, want 1", len(blocks))
	}
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeService("docs/runtime.md", []byte(blocks[0][:strings.Index(blocks[0], "```")]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.WithService(s, "docs/runtime.md"); err != nil {
		t.Fatal(err)
	}
}

// TestEditRecomputesDefaults: a default that depends on the other services (table_share)
// is computed again after an edit, as the file with the change would get it.
func TestEditRecomputesDefaults(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte("interfaces: [{name: eth0}]\nservices:\n"+
		"  - {name: a, vip: 198.19.0.10, port: 80, backends: [{address: 198.18.0.11}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Services[0].TableShare != 100 {
		t.Fatalf("one service: share %d", cfg.Services[0].TableShare)
	}
	s, err := DecodeService("req", []byte("{name: b, vip: 198.19.0.11, port: 80, backends: [{address: 198.18.0.11}]}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cfg.WithService(s, "req")
	if err != nil {
		t.Fatal(err)
	}
	if n.Services[0].TableShare != DefaultTableShare || n.Services[1].TableShare != DefaultTableShare {
		t.Fatalf("two services: shares %d, %d", n.Services[0].TableShare, n.Services[1].TableShare)
	}
	y, err := Marshal(n, "")
	if err != nil || strings.Contains(string(y), "table_share") {
		t.Fatalf("a defaulted share is written: %v\n%s", err, y)
	}
	back, err := n.WithoutService("b")
	if err != nil || back.Services[0].TableShare != 100 {
		t.Fatalf("back to one service: %v, share %d", err, back.Services[0].TableShare)
	}
}

// TestEditReplacesSections: a health section written by an edit replaces the running one
// (an http check's path does not stay behind a tcp check), and the result saves and parses.
func TestEditReplacesSections(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeService("req", []byte("health: {kind: tcp, port: 80}\n"), &cfg.Services[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := cfg.WithService(s, "req")
	if err != nil {
		t.Fatal(err)
	}
	if h := n.Services[0].Health; h.Kind != HealthTCP || h.Path != "" || h.ExpectStatus != 0 {
		t.Fatalf("health after the edit: %+v", h)
	}
	y, err := Marshal(n, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("saved.yaml", y); err != nil {
		t.Fatalf("saved configuration refused: %v\n%s", err, y)
	}
}
