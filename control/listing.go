package control

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// ConnSource is an optional extension of a StatsSource: listings of the workers'
// connection tables. *dataplane.Dataplane is one.
type ConnSource interface {
	Conns(ctx context.Context, q dataplane.ConnQuery) (dataplane.ConnListing, error)
}

// MaxConnLimit bounds the entries one connection listing returns (the listing still walks
// and counts every entry); DefaultConnLimit is the limit when a request gives none.
const (
	MaxConnLimit     = 50_000
	DefaultConnLimit = 1000
)

// ListStats are ipvsadm's --stats columns: connections scheduled, packets and bytes in
// (client to VIP, what the data path forwards) and out (replies through the LB: NAT only;
// 0 for dr and tunnel, whose replies bypass the LB, as IPVS shows them).
type ListStats struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_pkts"`
	OutPkts  uint64 `json:"out_pkts"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
}

// ListBackend is one backend as `xlb ctl list` shows it (ipvsadm -Ln's destination line).
type ListBackend struct {
	ID      uint32 `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"` // address:port the backend receives on
	// Forward is ipvsadm's name of the method: Route (dr), Tunnel, Masq (nat).
	Forward string `json:"forward"`
	Weight  uint32 `json:"weight"` // in effect: 0 while down, disabled or drained
	// ActiveConn and InActConn count the connection-table entries on the backend:
	// established TCP, and every other state (UDP included).
	ActiveConn uint64    `json:"active_conn"`
	InActConn  uint64    `json:"inact_conn"`
	Stats      ListStats `json:"stats"`
}

// ListService is one service as `xlb ctl list` shows it (ipvsadm -Ln's service line).
type ListService struct {
	Name      string           `json:"name"`
	Protocol  config.Protocol  `json:"protocol"`
	Address   string           `json:"address"` // VIP:port
	Scheduler config.Scheduler `json:"scheduler"`
	// Flags are ipvsadm's service flags: "persistent SECONDS mask MASK" and "ops"; a
	// service group adds "group N pairs" (Address is its first pair).
	Flags    string        `json:"flags,omitempty"`
	Stats    ListStats     `json:"stats"`
	Backends []ListBackend `json:"backends"`
}

// Listing is what GET /api/v1/list answers.
type Listing struct {
	Time time.Time `json:"time"`
	// Capacity is the entries the workers' connection tables hold together.
	Capacity int           `json:"capacity"`
	Services []ListService `json:"services"`
	// ConnError says why ActiveConn and InActConn are missing, if they are.
	ConnError string `json:"conn_error,omitempty"`
}

// forwardName is ipvsadm's name of a method.
func forwardName(m config.Method) string {
	switch m {
	case config.MethodNAT:
		return "Masq"
	case config.MethodTunnel:
		return "Tunnel"
	}
	return "Route"
}

// List returns the services and backends with their counters and their connection-table
// entries (ipvsadm -Ln, --stats), in configuration order.
func (c *Controller) List(ctx context.Context) Listing {
	out := Listing{Services: []ListService{}}
	var counts map[string]map[uint32]dataplane.ConnCount
	if cs, ok := c.opts.Stats.(ConnSource); ok {
		l, err := cs.Conns(ctx, dataplane.ConnQuery{})
		if err != nil {
			out.ConnError = err.Error()
		}
		counts, out.Capacity = l.Counts, l.Capacity
	} else {
		out.ConnError = "no data path"
	}
	fs := c.flowStats()
	out.Time = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		sc := &s.cfg
		ls := ListService{Name: sc.Name, Protocol: sc.Protocol, Scheduler: sc.Scheduler,
			Address: netip.AddrPortFrom(sc.VIP, sc.Port).String(), Backends: []ListBackend{}, Flags: listFlags(sc)}
		sfs := fs[sc.Name]
		if t := svcTraffic(sfs); t != nil {
			ls.Stats = listStats(t)
		}
		sb := s.schedBackends()
		for i, b := range s.backends {
			port := sc.Port
			if sc.Method == config.MethodNAT && b.port != 0 {
				port = b.port
			}
			lb := ListBackend{ID: b.id, Name: b.name, Address: netip.AddrPortFrom(b.addr, port).String(),
				Forward: forwardName(sc.Method)}
			if sb[i].Up {
				lb.Weight = sb[i].Weight
			}
			cc := counts[sc.Name][b.id]
			lb.ActiveConn, lb.InActConn = cc.Active, cc.Inactive
			if t := beTraffic(sfs, b.id); t != nil {
				lb.Stats = listStats(t)
			}
			ls.Backends = append(ls.Backends, lb)
		}
		out.Services = append(out.Services, ls)
	}
	return out
}

// ConnsRequest is a connection listing's query as the API takes it.
type ConnsRequest struct {
	Service string
	Client  string // an address or a prefix
	Limit   string // 0..MaxConnLimit; "" is DefaultConnLimit
}

// Conns lists connection-table entries (ipvsadm -Lnc). Bad input is answered with
// config.ErrValue and nothing is read.
func (c *Controller) Conns(ctx context.Context, req ConnsRequest) (dataplane.ConnListing, error) {
	q := dataplane.ConnQuery{Service: req.Service, Limit: DefaultConnLimit}
	if req.Client != "" {
		p, err := parseClient(req.Client)
		if err != nil {
			return dataplane.ConnListing{}, err
		}
		q.Client = p
	}
	if req.Limit != "" {
		n, err := strconv.Atoi(req.Limit)
		if err != nil || n < 0 || n > MaxConnLimit {
			return dataplane.ConnListing{}, fmt.Errorf("%w: limit %q is not a number in 0..%d", config.ErrValue, req.Limit, MaxConnLimit)
		}
		q.Limit = n
	}
	if req.Service != "" {
		c.mu.Lock()
		known := c.byName[req.Service] != nil
		c.mu.Unlock()
		if !known {
			return dataplane.ConnListing{}, fmt.Errorf("service %q: %w", req.Service, ErrNotFound)
		}
	}
	cs, ok := c.opts.Stats.(ConnSource)
	if !ok {
		return dataplane.ConnListing{}, fmt.Errorf("connections: %w: no data path", ErrNotFound)
	}
	return cs.Conns(ctx, q)
}

// parseClient reads a client filter: a prefix, or an address (all of its bits).
func parseClient(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: client %q is not an address or a prefix", config.ErrValue, s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func listStats(t *TrafficStatus) ListStats {
	return ListStats{Conns: t.NewFlows, InPkts: t.Packets, InBytes: t.Bytes, OutPkts: t.OutPackets, OutBytes: t.OutBytes}
}
