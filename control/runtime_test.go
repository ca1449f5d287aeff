package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

// TestRuntimeChangesOverAPI adds, edits and deletes services and backends through the
// API: untouched backends keep their IDs (so their flows stay), the changes are listed in
// the status and the saved configuration, and a reload from the file drops them.
func TestRuntimeChangesOverAPI(t *testing.T) {
	r := newRig(t, twoSvc)
	r.prober.fire("web/a", health.StateUp)
	cl := &Client{Base: serve(t, NewHandler(r.c, HandlerOptions{}))}
	ctx := context.Background()
	idA := r.backend("web", "a").ID

	must(t, cl.AddService(ctx, []byte("name: api\nvip: 198.19.0.11\nport: 8080\nscheduler: rr\n"+
		"backends: [{name: x, address: 198.18.0.31}]\nhealth: {kind: none}\n")))
	if b := r.backend("api", "x"); !b.Up {
		t.Fatalf("added service's backend %+v", b)
	}
	must(t, cl.AddBackend(ctx, "web", []byte(`{"name": "e", "address": "198.18.0.15", "weight": 30}`)))
	must(t, cl.EditBackend(ctx, "web", "b", []byte("weight: 7\n")))
	must(t, cl.EditService(ctx, "api", []byte(`{"scheduler": "wrr"}`)))
	must(t, cl.DeleteBackend(ctx, "web", "c"))
	if got := r.backend("web", "a").ID; got != idA {
		t.Fatalf("untouched backend a changed ID %d -> %d", idA, got)
	}
	if !r.backend("web", "a").Up || r.backend("web", "b").Weight != 7 || r.backend("web", "e").Weight != 30 {
		t.Fatalf("web after the changes: %+v", r.backends("web"))
	}
	for _, b := range r.backends("web") {
		if b.Name == "c" {
			t.Fatal("deleted backend c still published")
		}
	}
	if sp := r.spec("api"); sp.Sched.Strategy().String() != "wrr" {
		t.Fatalf("edited scheduler %v", sp.Sched.Strategy())
	}
	st, err := cl.Status(ctx)
	must(t, err)
	if len(st.RuntimeChanges) != 5 || st.Reloads != 0 {
		t.Fatalf("status %+v", st)
	}

	// Saved: what `xlb run --check` reads, with every change in it.
	y, err := cl.Save(ctx)
	must(t, err)
	saved, err := config.Parse("saved.yaml", y)
	if err != nil {
		t.Fatalf("saved configuration refused: %v\n%s", err, y)
	}
	if i := saved.ServiceIndex("api"); i < 0 || saved.Services[i].Scheduler.String() != "wrr" {
		t.Fatalf("saved services %+v", saved.Services)
	}
	if j, _ := saved.Services[0].BackendIndex("c"); j >= 0 {
		t.Fatal("deleted backend saved")
	}
	if j, _ := saved.Services[0].BackendIndex("b"); j < 0 || saved.Services[0].Backends[j].WeightOf() != 7 {
		t.Fatal("edited weight not saved")
	}

	// A reload from the file drops the runtime changes.
	path := r.dir + "/xlb.yaml"
	writeFile(t, path, twoSvc)
	must(t, r.c.ReloadFile(path))
	if st := r.c.Status(); len(st.RuntimeChanges) != 0 || st.Reloads != 1 {
		t.Fatalf("after reload %+v", st)
	}
	if r.backend("web", "a").ID != idA || r.backend("web", "b").Weight != 50 {
		t.Fatalf("after reload %+v", r.backends("web"))
	}
	for _, s := range r.c.Services() {
		if s.Name == "api" {
			t.Fatal("runtime service survived the reload")
		}
	}
}

// TestRuntimeBadInput sends bad input to every new call: each is answered with a 4xx and
// a reason, and nothing changes (no snapshot published, the same saved configuration).
func TestRuntimeBadInput(t *testing.T) {
	r := newRig(t, twoSvc)
	h := NewHandler(r.c, HandlerOptions{})
	base := serve(t, h)
	cl := &Client{Base: base}
	ctx := context.Background()
	before, err := r.c.SaveYAML()
	must(t, err)
	pubs := r.pub.count()
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"add: not yaml", "POST", "/services", "name: [", 400, "request:1: yaml syntax"},
		{"add: empty", "POST", "/services", "", 400, "empty document"},
		{"add: a list", "POST", "/services", "[1, 2]", 400, "want a mapping"},
		{"add: unknown field", "POST", "/services", "name: x\nvipz: 1\n", 400, "request:2: vipz: unknown field"},
		{"add: no port", "POST", "/services", "name: x\nvip: 198.19.0.12\nbackends: [{address: 198.18.0.11}]\n", 400,
			"request:1: port: missing: port is required (0 means all ports)"},
		{"add: bad vip", "POST", "/services", `{"name": "x", "vip": "300.1.1.1", "port": 80, "backends": [{"address": "198.18.0.11"}]}`,
			400, `vip: bad value: "300.1.1.1" is not an IP address`},
		{"add: bad scheduler", "POST", "/services", "name: x\nvip: 198.19.0.12\nport: 80\nscheduler: fast\nbackends: [{address: 198.18.0.11}]\n",
			400, "request:4: scheduler: bad value"},
		{"add: existing name", "POST", "/services", "name: web\nvip: 198.19.0.12\nport: 80\nbackends: [{address: 198.18.0.11}]\n",
			400, `service name "web" already used`},
		{"add: same vip:port", "POST", "/services", "name: web2\nvip: 198.19.0.10\nport: 80\nbackends: [{address: 198.18.0.11}]\n",
			400, "service tcp/198.19.0.10:80 already defined"},
		{"add: no backends", "POST", "/services", "name: x\nvip: 198.19.0.12\nport: 80\n", 400, "at least one backend is required"},
		{"add: too big", "POST", "/services", "name: x\n" + strings.Repeat("#", maxBody), 400, "larger than"},
		{"edit: unknown service", "PATCH", "/services/nope", "scheduler: rr\n", 404, "not found"},
		{"edit: rename", "PATCH", "/services/web", "name: other\n", 400, "cannot be renamed"},
		{"edit: bad weight type", "PATCH", "/services/web", "backends: [{address: 198.18.0.11, weight: heavy}]\n", 400,
			"backends[0].weight: bad type"},
		{"edit: nat port 0", "PATCH", "/services/dns", "port: 0\n", 400, "port 0 (all ports) is only allowed with method dr or tunnel"},
		{"delete: unknown service", "DELETE", "/services/nope", "", 404, "not found"},
		{"add backend: unknown service", "POST", "/services/nope/backends", "address: 198.18.0.40\n", 404, "not found"},
		{"add backend: bad address", "POST", "/services/web/backends", "address: 198.18.0\n", 400, "address: bad value"},
		{"add backend: weight", "POST", "/services/web/backends", `{"address": "198.18.0.40", "weight": 70000}`, 400,
			"request:1: weight: bad value: weight 70000 above 65535"},
		{"add backend: duplicate", "POST", "/services/web/backends", "address: 198.18.0.11\n", 400, "already in this service"},
		{"add backend: family", "POST", "/services/web/backends", "address: 2001:2::40\n", 400, "address family"},
		{"add backend: port on dr", "POST", "/services/web/backends", "address: 198.18.0.40\nport: 8080\n", 400,
			"request:2: port: bad value: a backend port is only used by method nat"},
		{"edit backend: unknown", "PATCH", "/services/web/backends/nobody", "weight: 1\n", 404, "not found"},
		{"edit backend: bad name", "PATCH", "/services/web/backends/a", "name: 'a b'\n", 400, "name: bad value"},
		{"delete backend: unknown", "DELETE", "/services/web/backends/nobody", "", 404, "not found"},
		{"delete backend: the last", "DELETE", "/services/dns/backends/d1", "", 400, "at least one backend is required"},
		{"conns: bad client", "GET", "/conns?client=198.18.0.300", "", 400, "is not an address or a prefix"},
		{"conns: bad limit", "GET", "/conns?limit=-1", "", 400, "limit"},
		{"conns: huge limit", "GET", "/conns?limit=99999999", "", 400, "limit"},
		{"conns: unknown service", "GET", "/conns?service=nope", "", 404, "not found"},
		{"conns: unknown parameter", "GET", "/conns?backend=a", "", 400, "unknown parameter"},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, base+APIPrefix+c.path, strings.NewReader(c.body))
		must(t, err)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || !strings.Contains(body.Error, c.want) {
			t.Errorf("%s: %d %q (%v); want %d with %q", c.name, resp.StatusCode, body.Error, err, c.status, c.want)
		}
	}
	after, err := r.c.SaveYAML()
	must(t, err)
	if strip := func(b []byte) string { return string(b[bytes.IndexByte(b, '\n'):]) }; strip(before) != strip(after) {
		t.Errorf("the configuration changed:\n%s\n----\n%s", before, after)
	}
	if r.pub.count() != pubs || len(r.c.RuntimeChanges()) != 0 {
		t.Errorf("%d publishes (want %d), runtime changes %v", r.pub.count(), pubs, r.c.RuntimeChanges())
	}
	// The Go client reports the API's answer as an *APIError.
	var ae *APIError
	if err := cl.DeleteService(ctx, "nope"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("client: %v", err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
