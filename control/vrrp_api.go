package control

import (
	"context"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/ha"
)

// registerVRRP adds the VRRP routes to the API:
//
//	GET  /api/v1/vrrp          the router's state and counters (VRRPStatus)
//	POST /api/v1/vrrp/demote   a master resigns and stays backup
//
// Without a router both answer 404.
func registerVRRP(mux *http.ServeMux, v VRRPSource) {
	mux.HandleFunc("GET "+APIPrefix+"/vrrp", func(w http.ResponseWriter, r *http.Request) {
		if v == nil {
			writeErr(w, errNoVRRP)
			return
		}
		writeJSON(w, http.StatusOK, v.VRRPStatus())
	})
	mux.HandleFunc("POST "+APIPrefix+"/vrrp/demote", func(w http.ResponseWriter, r *http.Request) {
		if v == nil {
			writeErr(w, errNoVRRP)
			return
		}
		if err := v.Demote(); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v.VRRPStatus())
	})
}

// VRRP returns the VRRP router's state.
func (c *Client) VRRP(ctx context.Context) (VRRPStatus, error) {
	var st VRRPStatus
	return st, c.do(ctx, http.MethodGet, "/vrrp", nil, &st)
}

// Demote makes the VRRP master resign; it returns the state after.
func (c *Client) Demote(ctx context.Context) (VRRPStatus, error) {
	var st VRRPStatus
	return st, c.do(ctx, http.MethodPost, "/vrrp/demote", nil, &st)
}

var (
	labelsVRRP          = []string{"interface", "vrid"}
	descVRRPState       = prometheus.NewDesc("xlb_vrrp_state", "VRRP state: 0 initialize, 1 backup, 2 master, 3 fault.", labelsVRRP, nil)
	descVRRPMaster      = prometheus.NewDesc("xlb_vrrp_master", "1 while this host is the VRRP master.", labelsVRRP, nil)
	descVRRPForwarding  = prometheus.NewDesc("xlb_vrrp_forwarding", "1 while the data path has the services (master only).", labelsVRRP, nil)
	descVRRPPriority    = prometheus.NewDesc("xlb_vrrp_priority", "Configured VRRP priority.", labelsVRRP, nil)
	descVRRPTransitions = prometheus.NewDesc("xlb_vrrp_transitions_total", "VRRP state changes (master changes).", labelsVRRP, nil)
	descVRRPSent        = prometheus.NewDesc("xlb_vrrp_adverts_sent_total", "VRRP advertisements sent.", labelsVRRP, nil)
	descVRRPRecv        = prometheus.NewDesc("xlb_vrrp_adverts_received_total", "VRRP advertisements received and used.", labelsVRRP, nil)
	descVRRPSendErr     = prometheus.NewDesc("xlb_vrrp_send_errors_total", "VRRP advertisements that failed to send.", labelsVRRP, nil)
	descVRRPResigns     = prometheus.NewDesc("xlb_vrrp_resigns_received_total", "Priority-0 advertisements (a master resigning) received.", labelsVRRP, nil)
	descVRRPAnnounce    = prometheus.NewDesc("xlb_vrrp_announcements_total", "Gratuitous ARPs / unsolicited neighbour advertisements sent.", labelsVRRP, nil)
	descVRRPHookErr     = prometheus.NewDesc("xlb_vrrp_hook_errors_total", "Failed switches of forwarding or of the VIPs on the interface.", labelsVRRP, nil)
	descVRRPMismatch    = prometheus.NewDesc("xlb_vrrp_addr_mismatches_total", "Advertisements whose VIP list differs from ours.", labelsVRRP, nil)
	descVRRPDrops       = prometheus.NewDesc("xlb_vrrp_drops_total", "Received VRRP messages not used, by reason.", append(labelsVRRP, "reason"), nil)
	descVRRPSplit       = prometheus.NewDesc("xlb_vrrp_split_brain", "1 while another master with lower precedence is heard.", labelsVRRP, nil)
	descVRRPSplitEvents = prometheus.NewDesc("xlb_vrrp_split_brain_events_total", "Advertisements from another master heard while master.", labelsVRRP, nil)
)

// vrrpCollector exports a VRRP router's state (registered by Run next to
// the controller's metrics).
type vrrpCollector struct{ v VRRPSource }

// Describe implements prometheus.Collector.
func (vc vrrpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVRRPState, descVRRPMaster, descVRRPForwarding, descVRRPPriority,
		descVRRPTransitions, descVRRPSent, descVRRPRecv, descVRRPSendErr, descVRRPResigns, descVRRPAnnounce,
		descVRRPHookErr, descVRRPMismatch, descVRRPDrops, descVRRPSplit, descVRRPSplitEvents} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (vc vrrpCollector) Collect(ch chan<- prometheus.Metric) {
	s := vc.v.VRRPStatus()
	l := []string{s.Interface, strconv.Itoa(int(s.VRID))}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descVRRPState, float64(s.State))
	gauge(descVRRPMaster, b2f(s.State == ha.Master))
	gauge(descVRRPForwarding, b2f(s.Forwarding))
	gauge(descVRRPPriority, float64(s.Priority))
	counter(descVRRPTransitions, s.Transitions)
	counter(descVRRPSent, s.AdvertsSent)
	counter(descVRRPRecv, s.AdvertsReceived)
	counter(descVRRPSendErr, s.SendErrors)
	counter(descVRRPResigns, s.ResignsReceived)
	counter(descVRRPAnnounce, s.Announcements)
	counter(descVRRPHookErr, s.HookErrors)
	counter(descVRRPMismatch, s.AddrMismatches)
	for r := 1; r < int(ha.NumDropReasons); r++ {
		ch <- prometheus.MustNewConstMetric(descVRRPDrops, prometheus.CounterValue, float64(s.Drops[r]),
			append(l, ha.DropReason(r).String())...)
	}
	gauge(descVRRPSplit, b2f(s.SplitBrain))
	counter(descVRRPSplitEvents, s.SplitBrainEvents)
}
