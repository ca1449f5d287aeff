package control

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// registeredNames returns the name of every metric xlb registers: what the registry of
// NewMetrics gathers (the controller's metrics, the Go and process collectors) and what the
// collectors Run adds for VRRP and BGP describe (they gather only with a router or a
// session running), with the histogram's series names.
func registeredNames(t *testing.T, m *Metrics) map[string]bool {
	names := map[string]bool{}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	fq := regexp.MustCompile(`fqName: "([a-zA-Z0-9_:]+)"`)
	ch := make(chan *prometheus.Desc, 256)
	for _, c := range []prometheus.Collector{m, m.probe, vrrpCollector{}, &BGPAnnouncer{}} {
		c.Describe(ch)
	}
	close(ch)
	for d := range ch {
		if s := fq.FindStringSubmatch(d.String()); s != nil {
			names[s[1]] = true
		}
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		names["xlb_backend_probe_duration_seconds"+suffix] = true
	}
	return names
}

// TestDashboardMetrics: every metric the Grafana dashboard (docs/grafana/xlb.json) queries is
// one xlb registers, every panel queries something, and the dashboard covers the data path,
// services, backends, health, VRRP and BGP.
func TestDashboardMetrics(t *testing.T) {
	r := newRig(t, twoSvc)
	names := registeredNames(t, NewMetrics(r.c, nil)) // xlb run's: its own registry
	for _, want := range []string{"xlb_worker_rx_packets_total", "xlb_vrrp_state", "xlb_bgp_session_up", "go_goroutines"} {
		if !names[want] {
			t.Fatalf("the registry lacks %s: the gathering is broken (%d names)", want, len(names))
		}
	}
	b, err := os.ReadFile("../docs/grafana/xlb.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	metric := regexp.MustCompile(`\b(?:xlb|go|process)_[a-z0-9_]+\b`)
	used := map[string]bool{}
	var exprs []string
	rows := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			rows[p.Title] = true
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if len(metric.FindAllString(tg.Expr, -1)) == 0 {
				t.Errorf("panel %q: %q names no xlb metric", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	for _, e := range exprs {
		for _, n := range metric.FindAllString(e, -1) {
			used[n] = true
			if !names[n] {
				t.Errorf("the dashboard queries %s, which xlb does not register (in %q)", n, e)
			}
		}
	}
	for _, row := range []string{"Data path", "Services", "Backends", "Health", "VRRP", "BGP"} {
		if !rows[row] {
			t.Errorf("no %q row", row)
		}
	}
	var xlb []string
	for n := range names {
		if strings.HasPrefix(n, "xlb_") && !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			xlb = append(xlb, n)
		}
	}
	slices.Sort(xlb)
	t.Logf("%d metric names queried; xlb metrics not on the dashboard: %v", len(used), xlb)
}
