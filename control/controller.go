package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/sched"
)

// Publisher receives every snapshot the controller builds.
// *dataplane.Dataplane is one.
type Publisher interface {
	Publish(*dataplane.Snapshot) error
}

// Prober runs health checks and reports transitions to the callbacks it was
// made with. *health.Monitor is one.
type Prober interface {
	Add(health.Check) error
	Remove(id string) error
	Replace(health.Check) error
	Statuses() []health.Status
	Close()
}

// Options configure a Controller. Publisher is required.
type Options struct {
	// Publisher receives the snapshots.
	Publisher Publisher
	// Resolver finds backends' next hops; nil means the kernel's routing
	// and neighbour tables (NewKernelResolver).
	Resolver Resolver
	// NewProber makes the health prober with the controller's callbacks;
	// nil means health.NewMonitor.
	NewProber func(ctx context.Context, opts health.Options) Prober
	// HealthNetns, when set, runs every probe in another network namespace
	// (see health.Options.Netns).
	HealthNetns func(fn func() error) error
	// Stats, when set, feeds counters to the API and the metrics.
	Stats StatsSource
	// Logger receives what the controller does; nil means slog.Default().
	Logger *slog.Logger
	// ResolveTimeout bounds one next-hop resolution (default 3s).
	ResolveTimeout time.Duration
}

// Controller holds the running configuration and turns it, the health
// verdicts, the API's changes and the next hops into dataplane snapshots.
// All its methods are safe for concurrent use; none is on the packet path.
type Controller struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	prober Prober
	wg     sync.WaitGroup

	reloadMu sync.Mutex // serialises Start, Reload and Close

	mu        sync.Mutex // guards everything below
	cfg       *config.Config
	services  []*svcState
	byName    map[string]*svcState
	byCheck   map[string]*beState
	nextID    uint32
	indexes   map[string]int // service name -> sched index
	nextIndex int
	builder   sched.Builder
	snap      *dataplane.Snapshot
	published time.Time
	pubErr    error
	started   bool
	closed    bool
	reloads   uint64
	reloadErr uint64
	lastErr   string
	pubCount  uint64
	vipRoutes bool // policy routes of checks through the vip are installed
	metrics   *Metrics
	rampTimer *time.Timer // the next slow-start step (slowstart.go)
	rampAt    time.Time
	runtime   []string // runtime changes since the configuration was last loaded (runtime.go)
}

// New returns a controller for cfg, parsed by config.Parse or built in Go:
// New fills its defaults in place (config.Config.Normalize) and validates
// it. Nothing runs before Start.
func New(cfg *config.Config, opts Options) (*Controller, error) {
	if opts.Publisher == nil {
		return nil, errors.New("control: no publisher")
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = NewKernelResolver()
	}
	if opts.ResolveTimeout == 0 {
		opts.ResolveTimeout = 3 * time.Second
	}
	if opts.NewProber == nil {
		opts.NewProber = func(ctx context.Context, o health.Options) Prober { return health.NewMonitor(ctx, o) }
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Logger,
		cfg:     cfg,
		byName:  map[string]*svcState{},
		byCheck: map[string]*beState{},
		indexes: map[string]int{},
		nextID:  1,
	}
	return c, nil
}

// Start resolves the next hops, publishes the first snapshot, starts the
// health checks and follows neighbour changes until ctx is done or Close.
// Backends start down until their first probe succeeds (kind none: up).
func (c *Controller) Start(ctx context.Context) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	c.mu.Lock()
	if c.started || c.closed {
		c.mu.Unlock()
		return fmt.Errorf("control: start: %w", ErrClosed)
	}
	c.started = true
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.prober = c.opts.NewProber(c.ctx, health.Options{OnTransition: c.onTransition, OnResult: c.onResult,
		Netns: c.opts.HealthNetns})
	adds, _, _ := c.applyLocked(c.cfg)
	c.mu.Unlock()

	if u, ok := c.opts.Resolver.(InterfaceUser); ok {
		names := make([]string, len(c.cfg.Interfaces))
		for i, in := range c.cfg.Interfaces {
			names[i] = in.Name
		}
		if err := u.UseInterfaces(names); err != nil {
			c.log.Warn("routes back to clients limited to the backends' interfaces", "err", err)
		}
	}
	c.resolveAll(c.ctx)
	c.mu.Lock()
	err := c.publishLocked("start")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	for _, chk := range adds {
		if err := c.prober.Add(chk); err != nil {
			return fmt.Errorf("control: start health check %s: %w", chk.ID, err)
		}
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.follow(c.ctx)
	}()
	go func() {
		defer c.wg.Done()
		c.watchThresholds(c.ctx)
	}()
	c.log.Info("controller started", "services", len(c.cfg.Services), "backends", c.numBackends())
	c.warnHashKey()
	return nil
}

// Close stops the health checks and the neighbour follower. The last
// snapshot stays published.
func (c *Controller) Close() error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	started := c.started
	c.mu.Unlock()
	if !started {
		return nil
	}
	c.cancel()
	c.prober.Close()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.opts.Resolver.(ThroughVIPRouter); ok && c.vipRoutes {
		c.vipRoutes = false
		if err := r.SetThroughVIP(nil); err != nil {
			return fmt.Errorf("control: close: %w", err)
		}
	}
	return nil
}

// metricsOf returns the metrics (nil without NewMetrics).
func (c *Controller) metricsOf() *Metrics {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.metrics
}

// proberOf returns the prober (nil before Start).
func (c *Controller) proberOf() Prober {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prober
}

// Config returns the running configuration. Do not modify it.
func (c *Controller) Config() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Snapshot returns the last published snapshot (nil before Start).
func (c *Controller) Snapshot() *dataplane.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// newIndex returns a sched service index not in use, preferring ones never
// used before so stale connection-table entries cannot match a new service.
func (c *Controller) newIndex() int {
	if c.nextIndex < sched.MaxServices {
		c.nextIndex++
		return c.nextIndex - 1
	}
	used := map[int]bool{}
	for _, i := range c.indexes {
		used[i] = true
	}
	for i := range sched.MaxServices {
		if !used[i] {
			return i
		}
	}
	return -1 // more services than sched allows: Build refuses it
}

// warnHashKey logs a warning when the configuration leaves hash_key to its public default.
func (c *Controller) warnHashKey() {
	if c.cfg.HashKey.IsDefault() {
		c.log.Warn("hash_key is not set: the flow hash that picks backends uses the public default key, "+
			"so anyone can compute which backend a connection gets; set hash_key (32 hex digits, "+
			"e.g. openssl rand -hex 16) to the same value on every host of the cluster",
			"default", sched.DefaultHashKeyHex)
	}
}

// publishLocked builds a snapshot from the current state and publishes it.
func (c *Controller) publishLocked(why string) error {
	specs := make([]dataplane.ServiceSpec, 0, len(c.services))
	now := time.Now()
	for _, s := range c.services {
		in := s.schedBackends()
		key := c.cfg.HashKey
		if key == (sched.HashKey{}) {
			key = sched.DefaultHashKey()
		}
		share := s.cfg.TableShare
		in, strategy := s.slowStart(in, now)
		if s.built == nil || !slices.Equal(in, s.inputs) || s.built.HashKey() != key || s.built.TableShare() != share ||
			s.built.Persistence() != s.cfg.SchedPersistence() || s.built.OnePacket() != s.cfg.OnePacket || s.built.Strategy() != strategy {
			ss, err := c.builder.Build(sched.ServiceConfig{Index: s.index, Strategy: strategy, HashKey: key, TableShare: share,
				Persistence: s.cfg.SchedPersistence(), OnePacket: s.cfg.OnePacket}, in)
			if err != nil {
				return c.pubFailed(fmt.Errorf("control: service %s: %w", s.cfg.Name, err))
			}
			s.built, s.inputs = ss, in
		}
		specs = append(specs, s.spec(s.built))
	}
	snap, err := dataplane.NewSnapshot(specs, c.routesLocked())
	if err != nil {
		return c.pubFailed(fmt.Errorf("control: build snapshot: %w", err))
	}
	err = c.opts.Publisher.Publish(snap)
	c.snap, c.published, c.pubErr = snap, time.Now(), err
	c.pubCount++
	if err != nil {
		c.log.Error("publish snapshot", "why", why, "err", err)
		return fmt.Errorf("control: publish: %w", err)
	}
	c.log.Debug("snapshot published", "why", why, "generation", snap.Generation())
	c.scheduleRampLocked(now)
	c.syncThroughVIPLocked()
	return nil
}

// syncThroughVIPLocked installs the policy routes of the checks through
// the VIP whose backends' next hops are resolved, and removes the others.
func (c *Controller) syncThroughVIPLocked() {
	r, ok := c.opts.Resolver.(ThroughVIPRouter)
	if !ok {
		return
	}
	var routes []VIPRoute
	for _, s := range c.services {
		if s.cfg.Method != config.MethodDR && s.cfg.Method != config.MethodTunnel {
			continue
		}
		for _, b := range s.backends {
			if b.throughVIP && b.checked() && b.resolved && b.hop.IfIndex > 0 {
				routes = append(routes, s.vipRoute(b))
			}
		}
	}
	if len(routes) == 0 && !c.vipRoutes {
		return
	}
	c.vipRoutes = len(routes) > 0
	if err := r.SetThroughVIP(routes); err != nil {
		c.log.Warn("checks through the vip", "err", err)
	}
}

func (c *Controller) pubFailed(err error) error {
	c.pubErr = err
	c.log.Error("snapshot not built", "err", err)
	return err
}

// routesLocked returns the routes NAT replies take back to clients (none
// without a NAT service).
func (c *Controller) routesLocked() []dataplane.Route {
	nat := false
	for _, s := range c.services {
		nat = nat || s.cfg.Method == config.MethodNAT
	}
	if !nat {
		return nil
	}
	r, ok := c.opts.Resolver.(RouteSource)
	if !ok {
		return nil
	}
	routes, err := r.Routes()
	if err != nil {
		c.log.Warn("routes back to clients incomplete: NAT replies to the clients left out are dropped", "err", err)
	}
	return routes
}

func (c *Controller) numBackends() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.services {
		n += len(s.backends)
	}
	return n
}

// onTransition applies a health verdict (called by the prober): the backend's state is the
// combination of its checks' states.
func (c *Controller) onTransition(t health.Transition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.byCheck[t.ID]
	if b == nil || c.closed {
		return
	}
	for i := range b.checks {
		if b.checks[i].id == t.ID {
			b.checks[i].state = t.To
		}
	}
	was, now := b.health, b.combined()
	c.log.Log(context.Background(), levelOf(t.To), "health check changed", "check", t.ID, "from", t.From.String(),
		"to", t.To.String(), "reason", t.Reason)
	if now == was {
		return
	}
	b.health, b.since, b.reason = now, t.Time, t.Reason
	if len(b.checks) > 1 {
		b.reason = t.ID + ": " + t.Reason
	}
	c.log.Log(context.Background(), levelOf(now), "backend health changed", "backend", b.key.service+"/"+b.name,
		"from", was.String(), "to", now.String(), "reason", b.reason)
	_ = c.publishLocked("health " + t.ID)
}

func levelOf(s health.State) slog.Level {
	if s != health.StateUp {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// onResult records a probe's latency and the load figure it reported
// (least-load).
func (c *Controller) onResult(id string, r health.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.byCheck[id]
	if b == nil {
		return
	}
	if c.metrics != nil {
		c.metrics.observe(b.key.service, b.name, r)
	}
	if r.HasWeight && !b.overWeight && b.weight != r.Weight {
		// An exec check with dynamic_weight (keepalived's misc_dynamic); the API's weight
		// wins, and a reload sets the configured weight again.
		c.log.Info("backend weight set by its check", "check", id, "from", b.weight, "to", r.Weight)
		b.weight = r.Weight
		_ = c.publishLocked("weight " + id)
	}
	if r.HasLoad {
		changed := !b.hasLoad || b.load != r.Load
		b.load, b.hasLoad = r.Load, true
		if changed && c.byName[b.key.service].strategy == sched.LeastLoad {
			_ = c.publishLocked("load " + id)
		}
	}
}
