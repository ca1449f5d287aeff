package control

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/connsync"
)

// SyncSource is the connection sync node the API reports (a *connsync.Node).
type SyncSource interface {
	Stats() connsync.Stats
}

// SyncStatus is the API's view of connection sync (GET /api/v1/sync).
type SyncStatus struct {
	Listen          string            `json:"listen"`
	Peers           []string          `json:"peers"`
	Sender          string            `json:"sender_id"`
	SentMessages    uint64            `json:"sent_messages"`
	SentRecords     uint64            `json:"sent_records"`
	SentBytes       uint64            `json:"sent_bytes"`
	SentKinds       map[string]uint64 `json:"sent_kinds"` // sent records by kind: conn, remove, template
	Received        uint64            `json:"received_messages"`
	ReceivedRecords uint64            `json:"received_records"`
	Applied         uint64            `json:"applied"`
	AppliedKinds    map[string]uint64 `json:"applied_kinds"` // applied records by kind (a removal: one that removed an entry)
	Lost            uint64            `json:"lost"`
	Dropped         map[string]uint64 `json:"dropped"`
	LagLast         time.Duration     `json:"lag_last_ns"`
	LagMax          time.Duration     `json:"lag_max_ns"`
	SenderCPU       time.Duration     `json:"sender_cpu_ns"`
	ReceiverCPU     time.Duration     `json:"receiver_cpu_ns"`
	Table           connsync.TableStats
}

// errNoSync is the API's answer when no sync section is configured.
var errNoSync = fmt.Errorf("sync: %w: no sync section in the configuration", ErrNotFound)

// SyncStatusOf converts a node's counters for the API.
func SyncStatusOf(s connsync.Stats) SyncStatus {
	st := SyncStatus{Listen: s.Listen, Peers: s.Peers, Sender: fmt.Sprintf("%016x", s.Sender),
		SentMessages: s.SentMessages, SentRecords: s.SentRecords, SentBytes: s.SentBytes, Received: s.Received,
		ReceivedRecords: s.ReceivedRecords, Applied: s.Applied, Lost: s.Lost, LagLast: s.LagLast, LagMax: s.LagMax,
		SenderCPU: s.SenderCPU, ReceiverCPU: s.ReceiverCPU, Table: s.Table, Dropped: map[string]uint64{},
		SentKinds: map[string]uint64{}, AppliedKinds: map[string]uint64{}}
	for i, n := range s.Dropped {
		st.Dropped[connsync.DropName(i)] = n
	}
	for k := range connsync.NumKinds {
		st.SentKinds[k.String()], st.AppliedKinds[k.String()] = s.SentKinds[k], s.AppliedKinds[k]
	}
	return st
}

// registerSync adds GET /api/v1/sync (404 without a sync section).
func registerSync(mux *http.ServeMux, s SyncSource) {
	mux.HandleFunc("GET "+APIPrefix+"/sync", func(w http.ResponseWriter, r *http.Request) {
		if s == nil {
			writeErr(w, errNoSync)
			return
		}
		writeJSON(w, http.StatusOK, SyncStatusOf(s.Stats()))
	})
}

// Sync returns the connection sync counters.
func (c *Client) Sync(ctx context.Context) (SyncStatus, error) {
	var st SyncStatus
	return st, c.do(ctx, http.MethodGet, "/sync", nil, &st)
}

var (
	descSyncSent     = prometheus.NewDesc("xlb_sync_sent_records_total", "Connection records sent to the peers (once per record, whatever the number of peers).", nil, nil)
	descSyncSentMsg  = prometheus.NewDesc("xlb_sync_sent_messages_total", "Sync messages sent (once per message).", nil, nil)
	descSyncSentB    = prometheus.NewDesc("xlb_sync_sent_bytes_total", "Sync bytes sent (UDP payload, summed over the peers).", nil, nil)
	descSyncRecv     = prometheus.NewDesc("xlb_sync_received_messages_total", "Sync datagrams received.", nil, nil)
	descSyncRecvRec  = prometheus.NewDesc("xlb_sync_received_records_total", "Records in accepted sync messages.", nil, nil)
	descSyncApplied  = prometheus.NewDesc("xlb_sync_applied_total", "Records written to the peers' connection table.", nil, nil)
	descSyncLost     = prometheus.NewDesc("xlb_sync_lost_messages_total", "Sequence numbers skipped by a peer's messages (lost or reordered).", nil, nil)
	descSyncDropped  = prometheus.NewDesc("xlb_sync_dropped_total", "Sync messages refused (or records not sent), by reason.", []string{"reason"}, nil)
	descSyncLag      = prometheus.NewDesc("xlb_sync_lag_seconds", "Last message: receive time minus when its oldest record may have been queued.", nil, nil)
	descSyncLagMax   = prometheus.NewDesc("xlb_sync_lag_max_seconds", "Largest lag seen.", nil, nil)
	descSyncEntries  = prometheus.NewDesc("xlb_sync_table_entries", "Slots of the peers' connection table in use (expired ones until reused).", nil, nil)
	descSyncCapacity = prometheus.NewDesc("xlb_sync_table_capacity", "Size of the peers' connection table.", nil, nil)
	descSyncEvicted  = prometheus.NewDesc("xlb_sync_table_evictions_total", "Live peer entries evicted for newer ones.", nil, nil)
	descSyncHits     = prometheus.NewDesc("xlb_sync_table_hits_total", "Flows new to this host found in the peers' table.", nil, nil)
	descSyncSentKind = prometheus.NewDesc("xlb_sync_sent_kind_records_total", "Records sent to the peers, by kind (conn, remove, template).", []string{"kind"}, nil)
	descSyncAppKind  = prometheus.NewDesc("xlb_sync_applied_kind_records_total", "Records applied to the peers' table, by kind (a removal: one that removed an entry).", []string{"kind"}, nil)
	descSyncRemoved  = prometheus.NewDesc("xlb_sync_table_removed_total", "Peer entries removed by their sender's removal records.", nil, nil)
	descSyncTplHits  = prometheus.NewDesc("xlb_sync_table_template_hits_total", "New persistent clients found in the peers' templates.", nil, nil)
	descSyncCPU      = prometheus.NewDesc("xlb_sync_cpu_seconds_total", "CPU time of the sync threads (user and system).", []string{"thread"}, nil)
)

// SyncCollector exports a sync node's counters as Prometheus metrics.
func SyncCollector(s SyncSource) prometheus.Collector { return syncCollector{s} }

type syncCollector struct{ s SyncSource }

// Describe implements prometheus.Collector.
func (sc syncCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSyncSent, descSyncSentMsg, descSyncSentB, descSyncRecv, descSyncRecvRec,
		descSyncApplied, descSyncLost, descSyncDropped, descSyncLag, descSyncLagMax, descSyncEntries,
		descSyncCapacity, descSyncEvicted, descSyncHits, descSyncSentKind, descSyncAppKind, descSyncRemoved,
		descSyncTplHits, descSyncCPU} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (sc syncCollector) Collect(ch chan<- prometheus.Metric) {
	s := sc.s.Stats()
	c := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	c(descSyncSent, s.SentRecords)
	c(descSyncSentMsg, s.SentMessages)
	c(descSyncSentB, s.SentBytes)
	c(descSyncRecv, s.Received)
	c(descSyncRecvRec, s.ReceivedRecords)
	c(descSyncApplied, s.Applied)
	c(descSyncLost, s.Lost)
	for i, n := range s.Dropped {
		ch <- prometheus.MustNewConstMetric(descSyncDropped, prometheus.CounterValue, float64(n), connsync.DropName(i))
	}
	g(descSyncLag, s.LagLast.Seconds())
	g(descSyncLagMax, s.LagMax.Seconds())
	g(descSyncEntries, float64(s.Table.Entries))
	g(descSyncCapacity, float64(s.Table.Capacity))
	c(descSyncEvicted, s.Table.Evictions)
	c(descSyncHits, s.Table.Hits)
	c(descSyncRemoved, s.Table.Removed)
	c(descSyncTplHits, s.Table.TemplateHits)
	for k := range connsync.NumKinds {
		ch <- prometheus.MustNewConstMetric(descSyncSentKind, prometheus.CounterValue, float64(s.SentKinds[k]), k.String())
		ch <- prometheus.MustNewConstMetric(descSyncAppKind, prometheus.CounterValue, float64(s.AppliedKinds[k]), k.String())
	}
	ch <- prometheus.MustNewConstMetric(descSyncCPU, prometheus.CounterValue, s.SenderCPU.Seconds(), "sender")
	ch <- prometheus.MustNewConstMetric(descSyncCPU, prometheus.CounterValue, s.ReceiverCPU.Seconds(), "receiver")
}
