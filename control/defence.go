package control

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/dataplane"
)

// DefenceSource is what the data path tells about its defences (*dataplane.Dataplane
// implements it): drops per service by reason, ACL hits per rule, and the XDP programs'
// verdict counters per interface.
type DefenceSource interface {
	PolicyDrops() (map[string]dataplane.PolicyDrops, error)
	ACLHits(service string) ([]dataplane.RuleHits, error)
	XDPCounters() (map[string]dataplane.SteeringCounters, error)
}

var (
	descPolicyDrops  = prometheus.NewDesc("xlb_service_policy_drops_total", "Packets the XDP program dropped for the service, by reason (acl, rate, source_rate).", []string{"service", "reason"}, nil)
	descXDPVerdicts  = prometheus.NewDesc("xlb_xdp_packets_total", "Packets the XDP steering program handled, by interface and verdict reason.", []string{"interface", "reason"}, nil)
	descAuthFailures = prometheus.NewDesc("xlb_api_auth_failures_total", "API requests refused for a missing or wrong token.", nil, nil)
)

// DefenceCollector exports the defence counters of d (nil: none) and the failed
// authentications of a (nil: none).
type DefenceCollector struct {
	D DefenceSource
	A *Access
}

// Describe implements prometheus.Collector.
func (dc DefenceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPolicyDrops
	ch <- descXDPVerdicts
	ch <- descAuthFailures
}

// Collect implements prometheus.Collector.
func (dc DefenceCollector) Collect(ch chan<- prometheus.Metric) {
	if dc.A != nil {
		ch <- prometheus.MustNewConstMetric(descAuthFailures, prometheus.CounterValue, float64(dc.A.AuthFailures()))
	}
	if dc.D == nil {
		return
	}
	if drops, err := dc.D.PolicyDrops(); err == nil {
		for svc, d := range drops {
			for _, r := range []struct {
				name string
				v    uint64
			}{{"acl", d.ACL}, {"rate", d.Rate}, {"source_rate", d.SourceRate}} {
				ch <- prometheus.MustNewConstMetric(descPolicyDrops, prometheus.CounterValue, float64(r.v), svc, r.name)
			}
		}
	}
	if sc, err := dc.D.XDPCounters(); err == nil {
		for ifname, c := range sc {
			for reason, v := range c {
				ch <- prometheus.MustNewConstMetric(descXDPVerdicts, prometheus.CounterValue, float64(v), ifname, reason)
			}
		}
	}
}

// registerDefence serves GET /api/v1/drops (per service, by reason, with the XDP
// verdicts per interface) and GET /api/v1/services/{service}/acl (rules and hits).
func registerDefence(mux *http.ServeMux, d DefenceSource) {
	mux.HandleFunc("GET "+APIPrefix+"/drops", func(w http.ResponseWriter, r *http.Request) {
		if d == nil {
			writeJSON(w, http.StatusOK, Drops{})
			return
		}
		var out Drops
		var err error
		if out.Services, err = d.PolicyDrops(); err != nil {
			writeErr(w, err)
			return
		}
		if out.XDP, err = d.XDPCounters(); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+APIPrefix+"/services/{service}/acl", func(w http.ResponseWriter, r *http.Request) {
		if d == nil {
			writeJSON(w, http.StatusOK, []dataplane.RuleHits{})
			return
		}
		hits, err := d.ACLHits(r.PathValue("service"))
		if err != nil {
			writeErr(w, err)
			return
		}
		if hits == nil {
			hits = []dataplane.RuleHits{}
		}
		writeJSON(w, http.StatusOK, hits)
	})
}

// Drops is GET /api/v1/drops: the packets dropped per service by reason, and the XDP
// programs' verdict counters per interface.
type Drops struct {
	Services map[string]dataplane.PolicyDrops      `json:"services"`
	XDP      map[string]dataplane.SteeringCounters `json:"xdp"`
}
