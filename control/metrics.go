package control

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/health"
)

// Metrics is the controller's Prometheus collector: service and backend
// state, health probes, data-path counters (per worker, drops by reason,
// connection table) and the controller's own publishes and reloads. It
// reads everything at scrape time, off the packet path.
type Metrics struct {
	c   *Controller
	reg *prometheus.Registry

	probe *prometheus.HistogramVec
}

var (
	labelsSvc    = []string{"service"}
	labelsBE     = []string{"service", "backend"}
	labelsWorker = []string{"worker", "queue", "cpu"}

	descSvcBackends  = prometheus.NewDesc("xlb_service_backends", "Configured backends of a service (fallbacks included).", labelsSvc, nil)
	descSvcActive    = prometheus.NewDesc("xlb_service_backends_active", "Backends of a service that receive new flows.", labelsSvc, nil)
	descSvcFallback  = prometheus.NewDesc("xlb_service_fallback_active", "1 while the service's fallback pool takes its new flows.", labelsSvc, nil)
	descBEHealth     = prometheus.NewDesc("xlb_backend_health", "Health verdict of a backend: 0 unknown, 1 down, 2 up.", labelsBE, nil)
	descBEUp         = prometheus.NewDesc("xlb_backend_up", "1 when the backend's health verdict is up.", labelsBE, nil)
	descBEActive     = prometheus.NewDesc("xlb_backend_active", "1 when the backend receives new flows (up, enabled, next hop resolved, weight > 0).", labelsBE, nil)
	descBEWeight     = prometheus.NewDesc("xlb_backend_weight", "Weight in effect (0 = drained).", labelsBE, nil)
	descBEDisabled   = prometheus.NewDesc("xlb_backend_disabled", "1 when the backend is disabled.", labelsBE, nil)
	descBEOverloaded = prometheus.NewDesc("xlb_backend_overloaded", "1 while the backend is at its upper connection threshold (no new flows).", labelsBE, nil)
	descBEResolved   = prometheus.NewDesc("xlb_backend_next_hop_resolved", "1 when the backend's next hop (MAC, interface) is resolved.", labelsBE, nil)
	descBEProbes     = prometheus.NewDesc("xlb_backend_probes_total", "Health probes run.", labelsBE, nil)
	descBEFailures   = prometheus.NewDesc("xlb_backend_probe_failures_total", "Health probes failed.", labelsBE, nil)
	descBELatency    = prometheus.NewDesc("xlb_backend_probe_last_latency_seconds", "Latency of the last completed probe.", labelsBE, nil)
	descPublishes    = prometheus.NewDesc("xlb_snapshots_published_total", "Snapshots published to the data path.", nil, nil)
	descGeneration   = prometheus.NewDesc("xlb_snapshot_generation", "Generation of the published snapshot.", nil, nil)
	descReloads      = prometheus.NewDesc("xlb_reloads_total", "Configuration reloads applied.", nil, nil)
	descReloadErrors = prometheus.NewDesc("xlb_reload_errors_total", "Configuration reloads refused.", nil, nil)
	descDrops        = prometheus.NewDesc("xlb_drops_total", "Frames dropped by the data path, by reason (all workers).", []string{"reason"}, nil)
	descConnEntries  = prometheus.NewDesc("xlb_conn_table_entries", "Live connection-table entries.", labelsWorker, nil)

	descSvcPackets   = prometheus.NewDesc("xlb_service_packets_total", "Packets received for the service (client to VIP), all workers.", labelsSvc, nil)
	descSvcBytes     = prometheus.NewDesc("xlb_service_bytes_total", "Bytes received for the service (client to VIP), all workers.", labelsSvc, nil)
	descSvcNewFlows  = prometheus.NewDesc("xlb_service_new_flows_total", "Flows the service's backends were given.", labelsSvc, nil)
	descSvcNoBackend = prometheus.NewDesc("xlb_service_no_backend_drops_total", "Packets of the service dropped because no backend could take them.", labelsSvc, nil)
	descBEPackets    = prometheus.NewDesc("xlb_backend_packets_total", "Packets scheduled to the backend (client to VIP).", labelsBE, nil)
	descBEBytes      = prometheus.NewDesc("xlb_backend_bytes_total", "Bytes scheduled to the backend (as received).", labelsBE, nil)
	descBENewFlows   = prometheus.NewDesc("xlb_backend_new_flows_total", "Flows the backend was given.", labelsBE, nil)
	descSvcOutPkts   = prometheus.NewDesc("xlb_service_out_packets_total", "NAT replies of the service translated back to clients, all workers.", labelsSvc, nil)
	descSvcOutBytes  = prometheus.NewDesc("xlb_service_out_bytes_total", "Bytes of NAT replies of the service (as received from the backends).", labelsSvc, nil)
	descBEOutPkts    = prometheus.NewDesc("xlb_backend_out_packets_total", "NAT replies from the backend translated back to clients.", labelsBE, nil)
	descBEOutBytes   = prometheus.NewDesc("xlb_backend_out_bytes_total", "Bytes of NAT replies from the backend (as received).", labelsBE, nil)
)

// workerCounters are the per-worker counters exported as
// xlb_worker_<name>_total.
var workerCounters = []struct {
	name, help string
	get        func(*dataplane.Counters) uint64
}{
	{"rx_packets", "Frames received.", func(c *dataplane.Counters) uint64 { return c.RxPackets }},
	{"rx_bytes", "Bytes received.", func(c *dataplane.Counters) uint64 { return c.RxBytes }},
	{"tx_packets", "Frames transmitted.", func(c *dataplane.Counters) uint64 { return c.TxPackets }},
	{"tx_bytes", "Bytes transmitted.", func(c *dataplane.Counters) uint64 { return c.TxBytes }},
	{"icmp_replies", "ICMP too-big replies sent.", func(c *dataplane.Counters) uint64 { return c.ICMPReplies }},
	{"nat_returns", "NAT replies translated back to the VIP.", func(c *dataplane.Counters) uint64 { return c.NATReturns }},
	{"to_kernel", "NAT replies handed to the kernel to route (no route to the client in the snapshot yet).", func(c *dataplane.Counters) uint64 { return c.ToKernel }},
	{"quic_routed", "QUIC packets forwarded by the server ID in their connection ID.", func(c *dataplane.Counters) uint64 { return c.QUICRouted }},
	{"quic_fallback", "QUIC-service packets that took the 4-tuple path (no routable connection ID, or its backend down).", func(c *dataplane.Counters) uint64 { return c.QUICFallback }},
	{"conn_hits", "Packets of known flows.", func(c *dataplane.Counters) uint64 { return c.ConnHits }},
	{"new_flows", "Packets of new flows (connection-table misses).", func(c *dataplane.Counters) uint64 { return c.ConnMisses }},
	{"conn_evictions", "Connection-table entries evicted by a new flow.", func(c *dataplane.Counters) uint64 { return c.ConnEvictions }},
	{"conn_expirations", "Idle connection-table entries expired.", func(c *dataplane.Counters) uint64 { return c.ConnExpirations }},
	{"conn_over_quota", "New flows of a service at its table share forwarded without a connection-table entry.", func(c *dataplane.Counters) uint64 { return c.ConnOverQuota }},
	{"conn_persisted", "New flows of persistent services sent to their client's remembered backend.", func(c *dataplane.Counters) uint64 { return c.ConnPersisted }},
	{"one_packet", "Packets of one-packet services, scheduled without a connection-table entry.", func(c *dataplane.Counters) uint64 { return c.ConnOnePacket }},
	{"conn_rescheduled", "Flows moved off a backend that went down.", func(c *dataplane.Counters) uint64 { return c.ConnRescheduled }},
	{"batches", "Batches processed.", func(c *dataplane.Counters) uint64 { return c.Batches }},
	{"kicks", "Wakeup syscalls.", func(c *dataplane.Counters) uint64 { return c.Kicks }},
	{"fill_short", "Refills short of free frames.", func(c *dataplane.Counters) uint64 { return c.FillShort }},
	{"tx_ring_full", "Transmit attempts that found the ring full.", func(c *dataplane.Counters) uint64 { return c.TxRingFull }},
	{"copied", "Frames copied into another interface's socket.", func(c *dataplane.Counters) uint64 { return c.Copied }},
	{"kernel_rx_dropped", "XDP_STATISTICS rx_dropped.", func(c *dataplane.Counters) uint64 { return c.Kernel.RxDropped }},
	{"kernel_rx_invalid", "XDP_STATISTICS rx_invalid_descs.", func(c *dataplane.Counters) uint64 { return c.Kernel.RxInvalid }},
	{"kernel_tx_invalid", "XDP_STATISTICS tx_invalid_descs.", func(c *dataplane.Counters) uint64 { return c.Kernel.TxInvalid }},
	{"kernel_rx_ring_full", "XDP_STATISTICS rx_ring_full.", func(c *dataplane.Counters) uint64 { return c.Kernel.RxRingFull }},
	{"kernel_fill_ring_empty", "XDP_STATISTICS rx_fill_ring_empty_descs.", func(c *dataplane.Counters) uint64 { return c.Kernel.FillRingEmpty }},
	{"kernel_tx_ring_empty", "XDP_STATISTICS tx_ring_empty_descs.", func(c *dataplane.Counters) uint64 { return c.Kernel.TxRingEmpty }},
}

var workerDescs = func() []*prometheus.Desc {
	out := make([]*prometheus.Desc, len(workerCounters))
	for i, wc := range workerCounters {
		out[i] = prometheus.NewDesc("xlb_worker_"+wc.name+"_total", wc.help, labelsWorker, nil)
	}
	return out
}()

// NewMetrics registers the controller's metrics in reg. A nil reg means a
// registry of their own, with the Go runtime and process collectors; a
// registry given by an embedding program gets xlb's metrics only.
func NewMetrics(c *Controller, reg *prometheus.Registry) *Metrics {
	own := reg == nil
	if own {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{c: c, reg: reg}
	m.probe = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "xlb_backend_probe_duration_seconds",
		Help:    "Duration of completed health probes.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, labelsBE)
	m.reg.MustRegister(m, m.probe)
	if own {
		m.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
	c.mu.Lock()
	c.metrics = m
	c.mu.Unlock()
	return m
}

// Registry returns the registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observe records a probe's duration (called with the controller's lock).
func (m *Metrics) observe(service, backend string, r health.Result) {
	m.probe.WithLabelValues(service, backend).Observe(r.Latency.Seconds())
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSvcBackends, descSvcActive, descSvcFallback, descBEHealth, descBEUp,
		descBEActive, descBEWeight, descBEDisabled, descBEOverloaded, descBEResolved, descBEProbes, descBEFailures, descBELatency,
		descPublishes, descGeneration, descReloads, descReloadErrors, descDrops, descConnEntries,
		descSvcPackets, descSvcBytes, descSvcNewFlows, descSvcNoBackend, descBEPackets, descBEBytes, descBENewFlows,
		descSvcOutPkts, descSvcOutBytes, descBEOutPkts, descBEOutBytes,
		descPersistUsed, descPersistCap} {
		ch <- d
	}
	for _, d := range workerDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.collectControl(ch)
	if m.c.opts.Stats != nil {
		m.collectDataPath(ch)
		collectPersist(ch, m.c.opts.Stats)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, l ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, l ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectControl sends the controller's view: services, backends, probes,
// publishes and reloads.
func (m *Metrics) collectControl(ch chan<- prometheus.Metric) {
	c := m.c
	statuses := map[string]health.Status{}
	if prober := c.proberOf(); prober != nil {
		for _, st := range prober.Statuses() {
			statuses[st.ID] = st
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		st := s.status()
		name := s.cfg.Name
		gauge(ch, descSvcBackends, float64(st.Backends), name)
		gauge(ch, descSvcActive, float64(st.Up), name)
		gauge(ch, descSvcFallback, b2f(st.Fallback), name)
		sb := s.schedBackends()
		for i, b := range s.backends {
			gauge(ch, descBEHealth, float64(b.health), name, b.name)
			gauge(ch, descBEUp, b2f(b.health == health.StateUp), name, b.name)
			gauge(ch, descBEActive, b2f(sb[i].Up && sb[i].Weight > 0), name, b.name)
			gauge(ch, descBEWeight, float64(b.weight), name, b.name)
			gauge(ch, descBEDisabled, b2f(b.disabled), name, b.name)
			gauge(ch, descBEOverloaded, b2f(b.overloaded), name, b.name)
			gauge(ch, descBEResolved, b2f(b.resolved), name, b.name)
			var probes, fails float64
			for i, id := range b.checkIDs() {
				hs, ok := statuses[id]
				if !ok {
					continue
				}
				probes, fails = probes+float64(hs.Probes), fails+float64(hs.Failures)
				if n := len(hs.Results); n > 0 && i == 0 {
					gauge(ch, descBELatency, hs.Results[n-1].Latency.Seconds(), name, b.name)
				}
			}
			if b.checked() {
				counter(ch, descBEProbes, probes, name, b.name)
				counter(ch, descBEFailures, fails, name, b.name)
			}

		}
	}
	counter(ch, descPublishes, float64(c.pubCount))
	if c.snap != nil {
		gauge(ch, descGeneration, float64(c.snap.Generation()))
	}
	counter(ch, descReloads, float64(c.reloads))
	counter(ch, descReloadErrors, float64(c.reloadErr))
}

// collectDataPath sends the data path's counters: per service and backend,
// per worker, and the drops by reason.
func (m *Metrics) collectDataPath(ch chan<- prometheus.Metric) {
	c := m.c
	for _, sv := range c.flowStats() {
		counter(ch, descSvcPackets, float64(sv.Packets), sv.Name)
		counter(ch, descSvcBytes, float64(sv.Bytes), sv.Name)
		counter(ch, descSvcNewFlows, float64(sv.NewFlows), sv.Name)
		counter(ch, descSvcNoBackend, float64(sv.NoBackend), sv.Name)
		counter(ch, descSvcOutPkts, float64(sv.OutPackets), sv.Name)
		counter(ch, descSvcOutBytes, float64(sv.OutBytes), sv.Name)
		for _, b := range sv.Backends {
			counter(ch, descBEPackets, float64(b.Packets), sv.Name, b.Name)
			counter(ch, descBEBytes, float64(b.Bytes), sv.Name, b.Name)
			counter(ch, descBENewFlows, float64(b.NewFlows), sv.Name, b.Name)
			counter(ch, descBEOutPkts, float64(b.OutPackets), sv.Name, b.Name)
			counter(ch, descBEOutBytes, float64(b.OutBytes), sv.Name, b.Name)
		}
	}
	var total dataplane.Counters
	for i, ws := range c.opts.Stats.Stats() {
		l := []string{strconv.Itoa(i), strconv.Itoa(ws.Queue), strconv.Itoa(ws.CPU)}
		for j, wc := range workerCounters {
			counter(ch, workerDescs[j], float64(wc.get(&ws.Counters)), l...)
		}
		gauge(ch, descConnEntries, float64(ws.ConnEntries), l...)
		total.Add(&ws.Counters)
	}
	for d, v := range total.Drops {
		counter(ch, descDrops, float64(v), dataplane.Drop(d).String())
	}
	for r, v := range total.Reasons {
		if encap.Reason(r).Drop() {
			counter(ch, descDrops, float64(v), encap.Reason(r).String())
		}
	}
}
