package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/bgp"
	"github.com/xlb-dev/xlb/config"
)

// ErrNoBGP answers a BGP request to an xlb without a bgp section.
var ErrNoBGP = fmt.Errorf("%w: no bgp section in the configuration", ErrNotFound)

// bgpPoll is how often the announcer re-reads the services' state. A
// health verdict reaches the routers within this (plus the BGP update).
const bgpPoll = 100 * time.Millisecond

// BGPAnnouncer keeps a host's BGP announcements in line with its state: it
// announces each service VIP while the service has an active backend and
// the host forwards, withdraws a VIP whose service has none, withdraws
// everything while the host is drained (existing flows keep being
// forwarded: the routers move them to the other hosts) and, on Shutdown,
// withdraws everything, waits for the routers to move the traffic, then
// ends the sessions. Its methods are safe for concurrent use.
type BGPAnnouncer struct {
	c    *Controller
	cfg  *config.BGP
	sp   *bgp.Speaker
	log  *slog.Logger
	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}

	mu         sync.Mutex
	forwarding bool
	drained    bool
	shutdown   bool
	lastErr    string
	changed    time.Time           // last change of the announced set
	started    time.Time           // when the announcer started
	settled    map[netip.Addr]bool // VIPs past their first health round (see want)
}

// bgpSettleMax bounds how long a VIP waits for its backends' first check results before
// its first announcement.
const bgpSettleMax = 30 * time.Second

// speakerConfig is the bgp section as the speaker's configuration.
func speakerConfig(b *config.BGP, log *slog.Logger) bgp.Config {
	sc := b.SpeakerConfig()
	sc.Logger = log
	return sc
}

// StartBGP starts the BGP speaker of cfg and the announcer that follows
// c's services. Nothing is announced before SetForwarding(true).
func StartBGP(ctx context.Context, cfg *config.BGP, c *Controller, log *slog.Logger) (*BGPAnnouncer, error) {
	if cfg == nil {
		return nil, ErrNoBGP
	}
	if log == nil {
		log = slog.Default()
	}
	sp, err := bgp.Start(ctx, speakerConfig(cfg, log))
	if err != nil {
		return nil, err
	}
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a := &BGPAnnouncer{c: c, cfg: cfg, sp: sp, log: log, wake: make(chan struct{}, 1), stop: stop, done: make(chan struct{}),
		started: time.Now(), settled: map[netip.Addr]bool{}}
	go a.loop(lctx)
	log.Info("bgp started", "local_as", cfg.LocalAS, "router_id", cfg.RouterID, "neighbors", len(cfg.Neighbors))
	return a, nil
}

func (a *BGPAnnouncer) loop(ctx context.Context) {
	defer close(a.done)
	t := time.NewTicker(bgpPoll)
	defer t.Stop()
	for {
		a.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
		}
	}
}

// want is the set of VIPs to announce now.
func (a *BGPAnnouncer) want() []netip.Addr {
	a.mu.Lock()
	announce := a.forwarding && !a.drained && !a.shutdown
	a.mu.Unlock()
	if !announce {
		return nil
	}
	var out, unsettled []netip.Addr
	a.c.mu.Lock()
	for _, s := range a.c.services {
		if s.status().Up == 0 {
			continue
		}
		vips, _ := s.cfg.Frontends() // a service group's every VIP
		settled := !s.unknownBackends()
		for _, v := range vips {
			switch {
			case slices.Contains(out, v):
			case settled:
				out = append(out, v)
			default:
				unsettled = append(unsettled, v)
			}
		}
	}
	a.c.mu.Unlock()
	// A VIP is first announced once one of its services with an active backend has a
	// result from every backend's checks (or bgpSettleMax after the start): a host that
	// joined would otherwise take flows with a Maglev table built from the backends that
	// answered first, and send established connections elsewhere than its peers do. Once
	// announced, a VIP no longer waits (a backend added by a reload starts unknown).
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range out {
		a.settled[v] = true
	}
	for _, v := range unsettled {
		if !slices.Contains(out, v) && (a.settled[v] || time.Since(a.started) > bgpSettleMax) {
			out = append(out, v)
		}
	}
	return out
}

// sync makes the announcements match the wanted set.
func (a *BGPAnnouncer) sync(ctx context.Context) error {
	want := a.want()
	before := a.sp.Announced()
	err := a.sp.Sync(ctx, want)
	after := a.sp.Announced()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Equal(before, after) {
		a.changed = time.Now()
	}
	msg := ""
	if err != nil {
		msg = err.Error()
		if msg != a.lastErr && !errors.Is(err, bgp.ErrStopped) {
			a.log.Warn("bgp: announcements", "err", err)
		}
	}
	a.lastErr = msg
	return err
}

// kick has the loop sync at once.
func (a *BGPAnnouncer) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// SetForwarding tells the announcer whether this host forwards (the data
// path runs): only a forwarding host announces.
func (a *BGPAnnouncer) SetForwarding(on bool) {
	a.mu.Lock()
	a.forwarding = on
	a.mu.Unlock()
	a.kick()
}

// DrainHost withdraws every route (the routers move the traffic, existing
// flows included, to the other hosts; this host keeps forwarding what still
// reaches it) until UndrainHost. The routes are withdrawn when it returns.
func (a *BGPAnnouncer) DrainHost(ctx context.Context) error {
	return a.setDrained(ctx, true)
}

// UndrainHost announces the VIPs again.
func (a *BGPAnnouncer) UndrainHost(ctx context.Context) error {
	return a.setDrained(ctx, false)
}

func (a *BGPAnnouncer) setDrained(ctx context.Context, on bool) error {
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		return fmt.Errorf("bgp: %w: shutting down", ErrClosed)
	}
	a.drained = on
	a.mu.Unlock()
	a.log.Info("bgp: host drain", "drained", on)
	return a.sync(ctx)
}

// Shutdown withdraws every route, waits withdraw_wait (the data path still
// forwarding) for the routers to move the traffic away when something was
// announced, then ends the sessions. Idempotent; nothing on a nil
// announcer.
func (a *BGPAnnouncer) Shutdown() {
	if a == nil {
		return
	}
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		<-a.done
		return
	}
	a.shutdown = true
	a.mu.Unlock()
	a.stop()
	<-a.done
	had := len(a.sp.Announced()) > 0
	if err := a.sp.WithdrawAll(context.Background()); err != nil {
		a.log.Warn("bgp: withdraw on shutdown", "err", err)
	}
	if had && a.cfg.WithdrawWait > 0 {
		a.log.Info("bgp: routes withdrawn, waiting for the routers to move traffic", "wait", a.cfg.WithdrawWait)
		time.Sleep(a.cfg.WithdrawWait)
	}
	a.sp.Stop()
	a.log.Info("bgp stopped")
}

// BGPStatus is the announcer's state as the API shows it.
type BGPStatus struct {
	LocalAS      uint32           `json:"local_as"`
	RouterID     string           `json:"router_id"`
	Forwarding   bool             `json:"forwarding"`
	Drained      bool             `json:"drained"`
	ShuttingDown bool             `json:"shutting_down,omitempty"`
	Announced    []string         `json:"announced"`
	Changed      time.Time        `json:"changed,omitzero"`
	Neighbors    []bgp.PeerStatus `json:"neighbors"`
	Error        string           `json:"error,omitempty"`
}

// Status returns the sessions and the announced routes.
func (a *BGPAnnouncer) Status(ctx context.Context) BGPStatus {
	a.mu.Lock()
	st := BGPStatus{LocalAS: a.cfg.LocalAS, RouterID: a.cfg.RouterID.String(), Forwarding: a.forwarding,
		Drained: a.drained, ShuttingDown: a.shutdown, Changed: a.changed, Error: a.lastErr, Announced: []string{}}
	a.mu.Unlock()
	for _, addr := range a.sp.Announced() {
		st.Announced = append(st.Announced, netip.PrefixFrom(addr, addr.BitLen()).String())
	}
	peers, err := a.sp.Peers(ctx)
	if err != nil && st.Error == "" {
		st.Error = err.Error()
	}
	st.Neighbors = peers
	return st
}

// registerBGP adds the BGP endpoints to the API:
//
//	GET  /api/v1/bgp                 sessions, announced routes, drain state
//	POST /api/v1/bgp/drain-host      withdraw every route, keep forwarding
//	POST /api/v1/bgp/undrain-host    announce again
func registerBGP(mux *http.ServeMux, a *BGPAnnouncer) {
	mux.HandleFunc("GET "+APIPrefix+"/bgp", func(w http.ResponseWriter, r *http.Request) {
		if a == nil {
			writeErr(w, ErrNoBGP)
			return
		}
		writeJSON(w, http.StatusOK, a.Status(r.Context()))
	})
	for path, op := range map[string]func(*BGPAnnouncer, context.Context) error{
		"/bgp/drain-host": (*BGPAnnouncer).DrainHost, "/bgp/undrain-host": (*BGPAnnouncer).UndrainHost} {
		mux.HandleFunc("POST "+APIPrefix+path, func(w http.ResponseWriter, r *http.Request) {
			if a == nil {
				writeErr(w, ErrNoBGP)
				return
			}
			if err := op(a, r.Context()); err != nil {
				writeErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, a.Status(r.Context()))
		})
	}
}

// BGP returns the host's BGP state.
func (c *Client) BGP(ctx context.Context) (BGPStatus, error) {
	var st BGPStatus
	return st, c.do(ctx, http.MethodGet, "/bgp", nil, &st)
}

// DrainHost withdraws the host's routes (it keeps forwarding).
func (c *Client) DrainHost(ctx context.Context) (BGPStatus, error) {
	var st BGPStatus
	return st, c.do(ctx, http.MethodPost, "/bgp/drain-host", nil, &st)
}

// UndrainHost announces the host's routes again.
func (c *Client) UndrainHost(ctx context.Context) (BGPStatus, error) {
	var st BGPStatus
	return st, c.do(ctx, http.MethodPost, "/bgp/undrain-host", nil, &st)
}

var (
	labelsPeer         = []string{"neighbor"}
	descBGPSessionUp   = prometheus.NewDesc("xlb_bgp_session_up", "1 while the BGP session with the neighbor is established.", labelsPeer, nil)
	descBGPState       = prometheus.NewDesc("xlb_bgp_session_state", "BGP FSM state: 0 unknown, 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established.", labelsPeer, nil)
	descBGPAdvertised  = prometheus.NewDesc("xlb_bgp_neighbor_routes_advertised", "Routes advertised to the neighbor.", labelsPeer, nil)
	descBGPRoutes      = prometheus.NewDesc("xlb_bgp_routes_announced", "Routes (VIPs) this host announces.", nil, nil)
	descBGPRoute       = prometheus.NewDesc("xlb_bgp_route_announced", "1 for each announced route.", []string{"prefix"}, nil)
	descBGPDrained     = prometheus.NewDesc("xlb_bgp_host_drained", "1 while the host is drained (xlb ctl drain-host).", nil, nil)
	descBGPForwarding  = prometheus.NewDesc("xlb_bgp_host_forwarding", "1 while the host forwards (and may announce).", nil, nil)
	bgpMetricsDescribe = []*prometheus.Desc{descBGPSessionUp, descBGPState, descBGPAdvertised, descBGPRoutes, descBGPRoute,
		descBGPDrained, descBGPForwarding}
)

// Describe implements prometheus.Collector.
func (a *BGPAnnouncer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range bgpMetricsDescribe {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *BGPAnnouncer) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := a.Status(ctx)
	for _, p := range st.Neighbors {
		n := p.Address.String()
		gauge(descBGPSessionUp, b2f(p.Established()), n)
		gauge(descBGPState, float64(p.StateIndex()), n)
		gauge(descBGPAdvertised, float64(p.Advertised), n)
	}
	gauge(descBGPRoutes, float64(len(st.Announced)))
	for _, r := range st.Announced {
		gauge(descBGPRoute, 1, r)
	}
	gauge(descBGPDrained, b2f(st.Drained))
	gauge(descBGPForwarding, b2f(st.Forwarding))
}
