package xlb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// Errors of the LB's life cycle.
var (
	// ErrClosed: Run was called on an LB that is closed or has run already
	// (an LB runs once; make a new one to run again).
	ErrClosed = errors.New("xlb: closed")
)

// DataPath is what the LB drives: it receives the controller's snapshots
// and reports its counters. *dataplane.Dataplane is the real one (AF_XDP
// sockets and the XDP program, attached by Run); WithDataPath gives another,
// e.g. a fake that needs no root.
type DataPath interface {
	control.Publisher
	control.StatsSource
	// Start starts forwarding; the data path stops when ctx ends.
	Start(ctx context.Context) error
	// Close stops forwarding and releases (detaches) everything.
	Close() error
}

// LB is one load balancer: the data path, the controller (health checks,
// next hops, snapshots), and optionally the HTTP API and /metrics, a VRRP
// router and a BGP speaker, as the configuration and the options say.
// Make it with New, run it with Run, stop it by ending Run's context or
// with Close. Its methods are safe for concurrent use.
type LB struct {
	cfg   *config.Config
	o     options
	log   *slog.Logger
	ctrl  *control.Controller
	met   *control.Metrics
	vrrp  *control.VRRPSet // nil without a vrrp section or vrrp_instances
	sync  *connsync.Node   // nil without a sync section
	relay *relay

	ready     chan struct{}
	closeOnce sync.Once
	closing   chan struct{}

	mu    sync.Mutex
	state runState
	done  chan struct{} // closed when Run returns
	api   net.Addr
	bgp   *control.BGPAnnouncer
}

type runState int

const (
	stateNew runState = iota
	stateRunning
	stateDone
)

// New checks cfg (filling its defaults in place: config.Config.Normalize)
// and builds the balancer without touching the system: nothing is attached,
// no socket is opened and no goroutine runs before Run. A bad configuration
// is refused with every problem (a config.ConfigErrors).
func New(cfg *config.Config, opts ...Option) (*LB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	lb := &LB{cfg: cfg, o: o, log: o.log, relay: &relay{}, ready: make(chan struct{}),
		closing: make(chan struct{}), done: make(chan struct{})}
	var pub control.Publisher = lb.relay
	cfg.Normalize()
	if len(cfg.Instances()) > 0 && !o.noVRRP {
		if err := cfg.Validate(); err != nil {
			return nil, err // before ha looks at the section
		}
		n, err := control.NewVRRP(cfg, lb.relay, lb.log, o.haOpts...)
		if err != nil {
			return nil, err
		}
		lb.vrrp, pub = n, n.Publisher()
	}
	c, err := control.New(cfg, control.Options{Publisher: pub, Stats: lb.relay, Logger: lb.log,
		Resolver: o.resolver})
	if err != nil {
		return nil, err
	}
	lb.ctrl = c
	lb.met = control.NewMetrics(c, o.registry)
	if lb.vrrp != nil {
		if err := lb.met.Registry().Register(lb.vrrp.Collector()); err != nil {
			return nil, fmt.Errorf("vrrp metrics: %w", err)
		}
	}
	if err := lb.newSync(cfg); err != nil {
		return nil, err
	}
	return lb, nil
}

// Controller returns the controller: services, backends and their changes
// (weights, drain, enable, disable), reloads. Its changes apply once Run
// has started it.
func (lb *LB) Controller() *control.Controller { return lb.ctrl }

// Config returns the running configuration (after a reload, the new one).
func (lb *LB) Config() *config.Config { return lb.ctrl.Config() }

// Ready is closed once Run forwards (and serves the API, when enabled).
func (lb *LB) Ready() <-chan struct{} { return lb.ready }

// APIAddr returns the address the API listens on, or nil (API off, or
// not running yet).
func (lb *LB) APIAddr() net.Addr {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.api
}

// Close stops a running LB and waits until Run has torn everything down:
// XDP programs detached, policy routes and rules of checks through the VIP,
// the VRRP crash guard's nftables table and the VIPs on the interface
// removed, BGP routes withdrawn. Closing an LB that never ran makes a later
// Run return ErrClosed. Close is idempotent and returns nil.
func (lb *LB) Close() error {
	lb.closeOnce.Do(func() { close(lb.closing) })
	lb.mu.Lock()
	running := lb.state == stateRunning
	if lb.state == stateNew {
		lb.state = stateDone
	}
	lb.mu.Unlock()
	if running {
		<-lb.done
	}
	return nil
}

// Run attaches the data path to the configured interfaces and forwards
// until ctx ends or Close is called, then tears everything down (see
// Close). It starts the controller, the VRRP router and the BGP speaker
// when configured, and the API when enabled (WithAPI). It returns the
// first fatal error, or nil after a clean stop. An LB runs once.
func (lb *LB) Run(ctx context.Context) (err error) {
	lb.mu.Lock()
	if lb.state != stateNew {
		lb.mu.Unlock()
		return ErrClosed
	}
	lb.state = stateRunning
	lb.mu.Unlock()
	defer func() {
		lb.mu.Lock()
		lb.state = stateDone
		lb.api, lb.bgp = nil, nil
		lb.mu.Unlock()
		close(lb.done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lb.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return lb.run(ctx)
}

// run is Run's body; every step's undo is deferred in order, so a failure
// at any point (or the end of ctx) leaves nothing behind.
func (lb *LB) run(ctx context.Context) error {
	// Open the API first: a refused listener must not leave XDP attached.
	var ln, sock net.Listener
	var token string
	if lb.o.api {
		a := lb.cfg.API
		if lb.o.apiListen != "" {
			a.Listen = lb.o.apiListen
		}
		if lb.o.apiSocket != "" {
			a.Socket = lb.o.apiSocket
		}
		var err error
		if ln, token, err = control.OpenAPI(&a); err != nil {
			return err
		}
		defer ln.Close()
		if sock, err = control.OpenAPISocket(&a); err != nil {
			return err
		}
		if sock != nil {
			defer sock.Close()
		}
	}
	dp, err := lb.openDataPath()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dp.Close(); cerr != nil {
			lb.log.Warn("data path close", "err", cerr)
		}
		lb.log.Info("data path closed")
	}()
	lb.relay.set(dp)
	stopSync, err := lb.startSync(ctx)
	if err != nil {
		return err
	}
	defer stopSync()
	if err := lb.ctrl.Start(ctx); err != nil {
		return err
	}
	defer lb.ctrl.Close()
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("data path start: %w", err)
	}
	if lb.vrrp != nil {
		lb.log.Info("data path ready; forwarding while VRRP master", "services", len(lb.cfg.Services))
	} else {
		lb.log.Info("forwarding", "services", len(lb.cfg.Services))
	}
	ann, err := lb.startBGP(ctx)
	if err != nil {
		return err
	}
	if ann != nil {
		// Runs before the data path closes: withdraw, wait while forwarding, stop.
		defer ann.Shutdown()
	}
	if lb.vrrp != nil {
		lb.vrrp.Start(ctx)
		defer lb.vrrp.Stop() // resign first: a master sends priority 0, stops forwarding, drops the VIPs
	}
	served := lb.serve(ctx, ln, sock, token, ann)
	close(lb.ready)
	select {
	case <-ctx.Done():
		lb.log.Info("shutting down")
		if served != nil {
			<-served
		}
		return nil
	case err := <-served:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	case err := <-lb.vrrp.Err():
		return fmt.Errorf("vrrp: %w", err)
	}
}

// openDataPath returns the data path of WithDataPath, or attaches the real
// one to the configured interfaces.
func (lb *LB) openDataPath() (DataPath, error) {
	if lb.o.dataPath != nil {
		return lb.o.dataPath, nil
	}
	dc := control.DataplaneConfig(lb.cfg)
	dc.ReplaceXDP = lb.o.replaceXDP
	dc.Sync = lb.sync
	dp, err := dataplane.New(dc)
	if err != nil {
		return nil, fmt.Errorf("data path: %w", err)
	}
	for _, in := range dp.Interfaces() {
		lb.log.Info("interface ready", "name", in.Name, "ifindex", in.Index, "queues", in.Queues,
			"xdp_mode", in.XDPMode, "zero_copy", in.ZeroCopy, "mtu", in.MTU)
	}
	for _, werr := range dp.WorkerErrors() {
		lb.log.Warn("worker", "err", werr)
	}
	return dp, nil
}

// startBGP starts the announcer of the bgp section (nil without one, or
// with WithoutBGP), registers its metrics and has it announce.
func (lb *LB) startBGP(ctx context.Context) (*control.BGPAnnouncer, error) {
	if lb.cfg.BGP == nil || lb.o.noBGP {
		return nil, nil
	}
	a, err := control.StartBGP(ctx, lb.cfg.BGP, lb.ctrl, lb.log)
	if err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	if err := lb.met.Registry().Register(a); err != nil {
		a.Shutdown()
		return nil, fmt.Errorf("bgp metrics: %w", err)
	}
	a.SetForwarding(true)
	lb.mu.Lock()
	lb.bgp = a
	lb.mu.Unlock()
	return a, nil
}

// serve serves the API on ln (TCP, TLS with api.tls_cert) and sock (the unix
// socket, may be nil) until ctx ends; the returned channel delivers the first
// Serve's result (nil channel, never ready, without an API).
func (lb *LB) serve(ctx context.Context, ln, sock net.Listener, token string, ann *control.BGPAnnouncer) <-chan error {
	if ln == nil {
		return nil
	}
	access := control.NewAccess(token)
	access.Log = lb.log
	if err := lb.met.Registry().Register(control.DefenceCollector{D: lb.relay, A: access}); err != nil {
		lb.log.Warn("defence metrics", "err", err)
	}
	ho := control.HandlerOptions{Access: access, Metrics: lb.met.Handler(), BGP: ann, Defence: lb.relay}
	if lb.vrrp != nil {
		ho.VRRP = lb.vrrp
	}
	if lb.sync != nil {
		ho.Sync = lb.sync
	}
	if cs, ok := lb.relay.get().(control.CaptureSource); ok {
		ho.Capture = cs // packet capture (xlb ctl capture)
	}
	h := control.NewHandler(lb.ctrl, ho)
	served := make(chan error, 2)
	go func() { served <- control.Serve(ctx, ln, h, lb.log) }()
	if sock != nil {
		go func() { served <- control.Serve(ctx, sock, h, lb.log) }()
		lb.log.Info("api socket", "path", sock.Addr().String(), "group", lb.cfg.API.SocketGroup)
	}
	lb.mu.Lock()
	lb.api = ln.Addr()
	lb.mu.Unlock()
	lb.log.Info("api listening", "addr", ln.Addr().String(), "token", token != "", "tls", lb.cfg.API.TLSCert != "")
	return served
}

// relay passes the controller's snapshots and the stats requests to the
// data path Run opens (before that, snapshots are dropped and there are
// no stats).
type relay struct {
	mu sync.Mutex
	dp DataPath
}

func (r *relay) set(dp DataPath) {
	r.mu.Lock()
	r.dp = dp
	r.mu.Unlock()
}

func (r *relay) get() DataPath {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dp
}

// Publish implements control.Publisher.
func (r *relay) Publish(s *dataplane.Snapshot) error {
	if dp := r.get(); dp != nil {
		return dp.Publish(s)
	}
	return nil
}

// Stats implements control.StatsSource.
func (r *relay) Stats() []dataplane.WorkerStats {
	if dp := r.get(); dp != nil {
		return dp.Stats()
	}
	return nil
}

// ActiveFlows implements control.ActiveFlowSource when the data path does.
func (r *relay) ActiveFlows() map[string]map[uint32]uint64 {
	if as, ok := r.get().(control.ActiveFlowSource); ok {
		return as.ActiveFlows()
	}
	return nil
}

// PolicyDrops, ACLHits and XDPCounters implement control.DefenceSource when the data
// path does (*dataplane.Dataplane); otherwise there is nothing to report.
func (r *relay) PolicyDrops() (map[string]dataplane.PolicyDrops, error) {
	if d, ok := r.get().(control.DefenceSource); ok {
		return d.PolicyDrops()
	}
	return map[string]dataplane.PolicyDrops{}, nil
}

func (r *relay) ACLHits(service string) ([]dataplane.RuleHits, error) {
	if d, ok := r.get().(control.DefenceSource); ok {
		return d.ACLHits(service)
	}
	return nil, nil
}

func (r *relay) XDPCounters() (map[string]dataplane.SteeringCounters, error) {
	if d, ok := r.get().(control.DefenceSource); ok {
		return d.XDPCounters()
	}
	return map[string]dataplane.SteeringCounters{}, nil
}

// FlowStats implements control.FlowStatsSource when the data path does.
func (r *relay) FlowStats() []dataplane.ServiceStats {
	if fs, ok := r.get().(control.FlowStatsSource); ok {
		return fs.FlowStats()
	}
	return nil
}
