package control

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
)

// serve serves h on a loopback TCP port whose connections count as the unix socket's
// (Peer.Local), so the API's own tests may change things without a token. Access over
// real sockets and TCP is tested in apiaccess_test.go.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, peerKey{}, Peer{Local: true, UID: 0, GID: 0})
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAPIReadAndChange(t *testing.T) {
	r := newRig(t, twoSvc)
	r.prober.fire("web/a", health.StateUp)
	cl := &Client{Base: serve(t, NewHandler(r.c, HandlerOptions{}))}
	ctx := context.Background()

	svcs, err := cl.Services(ctx)
	must(t, err)
	if len(svcs) != 2 || svcs[0].Name != "web" || svcs[0].Up != 1 || svcs[0].Backends != 4 || svcs[1].Method != config.MethodNAT {
		t.Fatalf("services = %+v", svcs)
	}
	bs, err := cl.Backends(ctx, "web")
	must(t, err)
	if len(bs) != 4 || bs[0].Name != "a" || bs[0].Health != "up" || !bs[0].Active || bs[1].Health != "unknown" {
		t.Fatalf("backends = %+v", bs)
	}
	if len(bs[0].Results) != 1 || bs[0].Results[0].LatencyMS != 1.5 || bs[0].Probes != 3 || !strings.HasPrefix(bs[0].Check, "tcp 198.18.0.11:80") {
		t.Errorf("health results = %+v", bs[0])
	}
	if !bs[3].Fallback || bs[1].Weight != 50 {
		t.Errorf("backends = %+v", bs)
	}

	must(t, cl.SetWeight(ctx, "web", "a", 42))
	if w := r.backend("web", "a").Weight; w != 42 {
		t.Errorf("published weight = %d, want 42", w)
	}
	must(t, cl.Drain(ctx, "web", "a"))
	if b := r.backend("web", "a"); b.Weight != 0 || !b.Up {
		t.Errorf("drained = %+v", b)
	}
	must(t, cl.Disable(ctx, "web", "a"))
	if r.backend("web", "a").Up {
		t.Error("disabled but up")
	}
	must(t, cl.Enable(ctx, "web", "a"))
	if !r.backend("web", "a").Up {
		t.Error("enabled but not up")
	}

	var ae *APIError
	if err := cl.Drain(ctx, "web", "nobody"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := cl.Backends(ctx, "nothing"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("unknown service: %v", err)
	}
	for _, body := range []string{"", "{}", `{"weight": -1}`, `{"weight": 70000}`, `{"weight": "x"}`, `{"weight": 1, "x": 2}`} {
		resp, err := http.Post(cl.Base+APIPrefix+"/services/web/backends/a/weight", "application/json", strings.NewReader(body))
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("weight body %q: status %d, want 400", body, resp.StatusCode)
		}
	}
	resp, err := http.Get(cl.Base + APIPrefix + "/services/web/backends/a/drain")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on a POST endpoint: %d", resp.StatusCode)
	}
}

func TestAPIToken(t *testing.T) {
	r := newRig(t, twoSvc)
	m := NewMetrics(r.c, nil)
	acc := NewAccess("s3cret")
	acc.MinDelay, acc.MaxDelay = time.Millisecond, 5*time.Millisecond
	srv := httptest.NewServer(NewHandler(r.c, HandlerOptions{Access: acc, Metrics: m.Handler()}))
	t.Cleanup(srv.Close)
	base := srv.URL
	ctx := context.Background()
	var ae *APIError
	for _, tok := range []string{"", "wrong", "s3cre", "s3cret2"} {
		cl := &Client{Base: base, Token: tok}
		if _, err := cl.Services(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("token %q: err = %v, want 401", tok, err)
		}
		if err := cl.Drain(ctx, "web", "a"); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("token %q: drain err = %v, want 401", tok, err)
		}
	}
	if w := r.backend("web", "a").Weight; w != 100 {
		t.Fatalf("unauthorised drain applied: weight %d", w)
	}
	resp, err := http.Get(base + "/metrics")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without token: %d", resp.StatusCode)
	}
	cl := &Client{Base: base, Token: "s3cret"}
	if _, err := cl.Services(ctx); err != nil {
		t.Errorf("right token refused: %v", err)
	}
	must(t, cl.Drain(ctx, "web", "a"))
}

func TestAPIOpenNeedsTokenBeyondLoopback(t *testing.T) {
	a := config.API{Listen: "198.18.0.1:9440"}
	if _, _, err := OpenAPI(&a); !errors.Is(err, ErrTokenRequired) {
		t.Fatalf("err = %v, want ErrTokenRequired", err)
	}
	tf := filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(tf, []byte("abc\n"), 0o600))
	a = config.API{Listen: "127.0.0.1:0", TokenFile: tf}
	ln, tok, err := OpenAPI(&a)
	must(t, err)
	ln.Close()
	if tok != "abc" {
		t.Errorf("token = %q", tok)
	}
	must(t, os.WriteFile(tf, []byte("\n"), 0o600))
	if _, _, err := OpenAPI(&a); !errors.Is(err, config.ErrValue) {
		t.Errorf("empty token file: %v", err)
	}
}

func TestAPIReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xlb.yaml")
	must(t, os.WriteFile(path, []byte(twoSvc), 0o600))
	cfg, err := config.Load(path)
	must(t, err)
	c := startRig(t, cfg).c
	cl := &Client{Base: serve(t, NewHandler(c, HandlerOptions{}))}
	ctx := context.Background()

	must(t, os.WriteFile(path, []byte(strings.Replace(twoSvc, "weight: 50", "weight: lots", 1)), 0o600))
	_, err = cl.Reload(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, path+":8:") {
		t.Fatalf("bad reload: %v, want 400 naming %s:8", err, path)
	}
	must(t, os.WriteFile(path, []byte(strings.Replace(twoSvc, "weight: 50", "weight: 60", 1)), 0o600))
	st, err := cl.Reload(ctx)
	must(t, err)
	if st.Reloads != 1 || st.ReloadErrors != 1 {
		t.Errorf("status = %+v", st)
	}
	bs, err := cl.Backends(ctx, "web")
	must(t, err)
	if bs[1].Weight != 60 {
		t.Errorf("weight after reload = %d", bs[1].Weight)
	}
	must(t, os.WriteFile(path, []byte(strings.Replace(twoSvc, "eth0", "eth9", 1)), 0o600))
	if _, err := cl.Reload(ctx); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "restart") {
		t.Errorf("interface change: %v, want 409 asking for a restart", err)
	}
}

// fakeStats is two workers' counters.
type fakeStats struct{}

func (fakeStats) Stats() []dataplane.WorkerStats {
	w := func(q int, rx uint64) dataplane.WorkerStats {
		ws := dataplane.WorkerStats{Queue: q, CPU: q + 1}
		ws.RxPackets, ws.ConnEntries, ws.ConnMisses = rx, rx/10, rx/5
		ws.Drops[dataplane.DropNoBackend] = 3
		ws.Kernel.RxRingFull = 1
		return ws
	}
	return []dataplane.WorkerStats{w(0, 1000), w(1, 500)}
}

func TestMetricsExposition(t *testing.T) {
	r := newRig(t, twoSvc, func(o *Options) { o.Stats = fakeStats{} })
	m := NewMetrics(r.c, nil)
	r.prober.fire("web/a", health.StateUp)
	r.c.onResult("web/a", health.Result{OK: true, Latency: 2e6})
	must(t, r.c.SetWeight("web", "b", 7))
	base := serve(t, NewHandler(r.c, HandlerOptions{Metrics: m.Handler()}))
	resp, err := http.Get(base + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	must(t, err)
	get := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("metric %s missing", name)
		}
	next:
		for _, mt := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(mt, labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Histogram != nil:
				return float64(mt.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("metric %s%v missing", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xlb_backend_weight", []string{"service", "web", "backend", "b"}, 7},
		{"xlb_backend_up", []string{"service", "web", "backend", "a"}, 1},
		{"xlb_backend_up", []string{"service", "web", "backend", "c"}, 0},
		{"xlb_backend_health", []string{"service", "web", "backend", "a"}, 2},
		{"xlb_backend_active", []string{"service", "dns", "backend", "d1"}, 1},
		{"xlb_service_backends", []string{"service", "web"}, 4},
		{"xlb_service_backends_active", []string{"service", "web"}, 1},
		{"xlb_backend_probes_total", []string{"service", "web", "backend", "a"}, 3},
		{"xlb_backend_probe_last_latency_seconds", []string{"service", "web", "backend", "a"}, 0.0015},
		{"xlb_backend_probe_duration_seconds", []string{"service", "web", "backend", "a"}, 1},
		{"xlb_worker_rx_packets_total", []string{"worker", "0", "queue", "0", "cpu", "1"}, 1000},
		{"xlb_worker_new_flows_total", []string{"worker", "1"}, 100},
		{"xlb_worker_kernel_rx_ring_full_total", []string{"worker", "1"}, 1},
		{"xlb_conn_table_entries", []string{"worker", "1"}, 50},
		{"xlb_drops_total", []string{"reason", "no_backend"}, 6},
		{"xlb_drops_total", []string{"reason", "truncated"}, 0},
		{"xlb_snapshots_published_total", nil, float64(r.pub.count())},
	}
	for _, c := range checks {
		if got := get(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// A backend removed by a reload leaves no series behind.
	must(t, r.c.Reload(r.parse(strings.Replace(twoSvc, "      - {name: a, address: 198.18.0.11}\n", "", 1))))
	resp2, err := http.Get(base + "/metrics")
	must(t, err)
	defer resp2.Body.Close()
	body, err := io.ReadAll(resp2.Body)
	must(t, err)
	if strings.Contains(string(body), `backend="a"`) {
		t.Error("series of removed backend a still exported")
	}
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.Label {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}
