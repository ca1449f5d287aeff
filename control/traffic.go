package control

import (
	"context"
	"net/http"
	"time"
)

// ActiveFlowSource is an optional extension of a StatsSource: the connection-table entries
// per backend, by service name and backend ID. *dataplane.Dataplane is one.
type ActiveFlowSource interface {
	ActiveFlows() map[string]map[uint32]uint64
}

// TrafficReport is what GET /api/v1/traffic answers: the data path's counters of every
// service and backend at one moment (what `xlb ctl top` turns into rates).
type TrafficReport struct {
	Time     time.Time        `json:"time"`
	Services []ServiceTraffic `json:"services"`
}

// ServiceTraffic is a service's counters and its backends'.
type ServiceTraffic struct {
	Name     string           `json:"name"`
	Traffic  TrafficStatus    `json:"traffic"`
	Active   uint64           `json:"active_flows"`
	Backends []BackendTraffic `json:"backends"`
}

// BackendTraffic is a backend's counters; Active counts its connection-table entries.
type BackendTraffic struct {
	ID      uint32        `json:"id"`
	Name    string        `json:"name"`
	Address string        `json:"address"`
	Traffic TrafficStatus `json:"traffic"`
	Active  uint64        `json:"active_flows"`
}

// Traffic returns the data path's per-service and per-backend counters (no services without
// a data path that counts them).
func (c *Controller) Traffic() TrafficReport {
	rep := TrafficReport{Time: time.Now(), Services: []ServiceTraffic{}}
	fs, ok := c.opts.Stats.(FlowStatsSource)
	if !ok || fs == nil {
		return rep
	}
	var active map[string]map[uint32]uint64
	if as, ok := c.opts.Stats.(ActiveFlowSource); ok {
		active = as.ActiveFlows()
	}
	for _, s := range fs.FlowStats() {
		st := ServiceTraffic{Name: s.Name, Traffic: *svcTraffic(&s), Backends: make([]BackendTraffic, 0, len(s.Backends))}
		for _, b := range s.Backends {
			bt := BackendTraffic{ID: b.ID, Name: b.Name, Address: b.Addr.String(), Active: active[s.Name][b.ID],
				Traffic: *beTrafficOf(&b)}
			st.Active += bt.Active
			st.Backends = append(st.Backends, bt)
		}
		rep.Services = append(rep.Services, st)
	}
	return rep
}

// Traffic fetches the data path's per-service and per-backend counters.
func (c *Client) Traffic(ctx context.Context) (TrafficReport, error) {
	var rep TrafficReport
	return rep, c.do(ctx, http.MethodGet, "/traffic", nil, &rep)
}
