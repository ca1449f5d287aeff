package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the Router lifecycle.
var (
	ErrRunning    = errors.New("vrrp: router already ran")
	ErrNotRunning = errors.New("vrrp: router is not running")
)

// Hooks connect a Router to the data path. Both are called from Run's goroutine, one at a
// time (keep them short: advertisements wait for them), and must be idempotent (OnBackup is
// also called at start-up, when nothing forwards).
// An error is logged and counted; the router's state does not depend on it.
type Hooks struct {
	// OnMaster: this router became master; start forwarding the VIPs. The VIPs are
	// announced (gratuitous ARP / unsolicited NA) right after it returns.
	OnMaster func() error
	// OnBackup: this router became backup or fault, or stops running as master; stop
	// forwarding.
	OnBackup func() error
	// OnState, when set, is told every state change (Initialize when Run returns) with the
	// priority in effect, after OnMaster or OnBackup; for notify programs and sync groups.
	// It must not wait for another Router's Run loop.
	OnState func(from, to State, priority uint8)
}

// Option configures a Router.
type Option func(*Router)

// WithTransport makes the router use t instead of opening raw sockets in Run.
func WithTransport(t Transport) Option { return func(r *Router) { r.tr = t } }

// WithLogger sets the logger for transitions and split-brain reports (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(r *Router) { r.log = l } }

// Router is one VRRPv3 virtual router. Create it with New, drive it with Run; State, Status
// and Demote are safe to call from any goroutine.
type Router struct {
	cfg   Config
	hooks Hooks
	tr    Transport
	log   *slog.Logger

	mu      sync.Mutex // guards m and the status fields below it
	m       machine
	sent    uint64
	sendErr uint64
	annc    uint64
	hookErr uint64

	recvd   atomic.Uint64
	drops   [NumDropReasons]atomic.Uint64
	mismat  atomic.Uint64
	started atomic.Bool
	demote  chan chan error
	cmds    chan func(m *machine, now time.Time) action
	done    chan struct{}
}

// New validates cfg (filling its defaults) and returns a Router that is not yet running.
func New(cfg Config, hooks Hooks, opts ...Option) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.VIPs = slices.Clone(cfg.VIPs)
	cfg.UnicastPeers = slices.Clone(cfg.UnicastPeers)
	r := &Router{
		cfg:    cfg,
		hooks:  hooks,
		log:    slog.Default(),
		demote: make(chan chan error),
		cmds:   make(chan func(*machine, time.Time) action, 64),
		done:   make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	r.m = newMachine(&r.cfg, cfg.SourceAddress)
	return r, nil
}

// State is the router's current state.
func (r *Router) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.state
}

// Demote makes a master resign (it sends priority 0, so a backup takes over after its skew
// time) and stay backup: it will not preempt again, and becomes master again only if no other
// master is heard for Master_Down_Interval. On a backup it just turns preemption off until
// the router is next master.
func (r *Router) Demote() error {
	if !r.started.Load() {
		return ErrNotRunning
	}
	reply := make(chan error, 1)
	select {
	case r.demote <- reply:
		return <-reply
	case <-r.done:
		return ErrNotRunning
	}
}

// SetFault puts the router in the Fault state (a master resigns with priority 0 and stops
// forwarding; a backup stops taking over) or takes it out (it starts over as backup). It may
// be called before Run (the router then starts in fault) and from any goroutine.
func (r *Router) SetFault(on bool) {
	r.command(func(m *machine, now time.Time) action { return m.fault(now, on) })
}

// SetPriority changes the advertised priority (1..254; tracked scripts and interfaces with
// a weight lower or raise it). A master advertises the new priority at once.
func (r *Router) SetPriority(p uint8) {
	p = min(max(p, 1), 254)
	r.command(func(m *machine, now time.Time) action { return m.setPriority(now, p) })
}

// command queues a machine step for Run's loop; before Run it waits there.
func (r *Router) command(f func(m *machine, now time.Time) action) {
	select {
	case r.cmds <- f:
	case <-r.done:
	}
}

type received struct {
	adv  Advert
	info RecvInfo
}

// Run opens the transport (unless one was given), runs the state machine until ctx is done,
// then resigns (a master sends priority 0 and calls OnBackup) and closes the transport. It
// returns nil after ctx is done, or the transport's error if receiving fails, in which case
// no priority-0 advertisement can be relied on (like a crash). Run may be called once.
func (r *Router) Run(ctx context.Context) error {
	if r.started.Swap(true) {
		return ErrRunning
	}
	defer close(r.done)
	if r.tr == nil {
		t, err := OpenTransport(&r.cfg)
		if err != nil {
			return err
		}
		r.tr = t
	}
	src := r.tr.Source()
	if !src.IsValid() || src.Is4() != !r.cfg.IPv6() {
		r.tr.Close()
		return fmt.Errorf("%w: transport source %v does not match the VIPs' family", ErrNoSource, src)
	}
	r.mu.Lock()
	r.m.primary = src
	r.mu.Unlock()

	rx := make(chan received, 16)
	rxErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rxErr <- r.receive(ctx, rx)
	}()
	defer wg.Wait()
	defer r.tr.Close()

	lp := loop{r: r, timer: time.NewTimer(time.Hour)}
	defer lp.timer.Stop()
	lp.step(func(m *machine, now time.Time) action { return m.start(now) })
	for pending := true; pending; { // SetFault and SetPriority called before Run
		select {
		case f := <-r.cmds:
			lp.step(f)
		default:
			pending = false
		}
	}
	for {
		lp.arm()
		select {
		case <-ctx.Done():
			lp.step(func(m *machine, now time.Time) action { return m.shutdown(now) })
			return nil
		case err := <-rxErr:
			r.log.Error("vrrp transport failed", "vrid", r.cfg.VirtualRouterID, "err", err)
			lp.step(func(m *machine, now time.Time) action { return m.shutdown(now) })
			return fmt.Errorf("vrrp receive on %s: %w", r.cfg.Interface, err)
		case p := <-rx:
			lp.step(func(m *machine, now time.Time) action { return m.advert(now, &p.adv, p.info.Src) })
		case <-lp.timer.C:
			lp.fired()
		case f := <-r.cmds:
			lp.step(f)
		case reply := <-r.demote:
			lp.step(func(m *machine, now time.Time) action { return m.demote(now) })
			reply <- nil
		}
	}
}

// loop is Run's timer and announcement bookkeeping.
type loop struct {
	r        *Router
	timer    *time.Timer
	garpLeft int
	garpNext time.Time
	buf      []byte
}

// step runs one machine step under the lock and performs its actions outside it.
func (l *loop) step(f func(m *machine, now time.Time) action) {
	now := time.Now()
	r := l.r
	r.mu.Lock()
	wasSplit := r.m.splitBrain(now)
	from := r.m.state
	a := f(&r.m, now)
	st, prio := r.m.state, r.m.priority
	peer := r.m.splitBrainPeer
	r.mu.Unlock()
	l.perform(a, now, st, prio, wasSplit, peer)
	if st != from {
		if st == Fault && a&actToBackup == 0 { // a master's way to fault logs in perform
			r.log.Info("vrrp state", "vrid", r.cfg.VirtualRouterID, "interface", r.cfg.Interface, "state", st)
		}
		if r.hooks.OnState != nil {
			r.hooks.OnState(from, st, prio)
		}
	}
}

func (l *loop) fired() {
	now := time.Now()
	if l.garpLeft > 0 && !now.Before(l.garpNext) {
		l.announce()
		l.garpLeft--
		l.garpNext = now.Add(l.r.cfg.GARPInterval)
	}
	l.step(func(m *machine, now time.Time) action { return m.timerFired(now) })
}

// arm sets the timer to the machine's deadline or the next announcement, whichever is first.
func (l *loop) arm() {
	l.r.mu.Lock()
	next := l.r.m.deadline()
	l.r.mu.Unlock()
	if next.IsZero() { // Fault: no timer of the machine's own
		next = time.Now().Add(time.Hour)
	}
	if l.garpLeft > 0 && l.garpNext.Before(next) {
		next = l.garpNext
	}
	l.timer.Stop()
	select {
	case <-l.timer.C:
	default:
	}
	l.timer.Reset(max(time.Until(next), 0))
}

func (l *loop) perform(a action, now time.Time, st State, prio uint8, wasSplit bool, peer netip.Addr) {
	r := l.r
	if a&actSendZero != 0 {
		l.send(0)
	}
	if a&actToBackup != 0 {
		l.garpLeft = 0
		r.log.Info("vrrp state", "vrid", r.cfg.VirtualRouterID, "interface", r.cfg.Interface, "state", st)
		l.hook(r.hooks.OnBackup, "backup")
	}
	if a&actSend != 0 {
		l.send(prio) // the priority in effect (tracking may have changed it)
	}
	if a&actToMaster != 0 {
		r.log.Info("vrrp state", "vrid", r.cfg.VirtualRouterID, "interface", r.cfg.Interface, "state", st)
		l.hook(r.hooks.OnMaster, "master")
		l.announce()
		l.garpLeft = r.cfg.GARPRepeat - 1
		l.garpNext = now.Add(r.cfg.GARPInterval)
	} else if a&actAnnounce != 0 {
		l.announce()
	}
	if a&actSplitBrain != 0 && !wasSplit {
		r.log.Warn("vrrp split brain: another master advertises with lower precedence",
			"vrid", r.cfg.VirtualRouterID, "interface", r.cfg.Interface, "peer", peer)
	}
}

func (l *loop) hook(f func() error, what string) {
	if f == nil {
		return
	}
	if err := f(); err != nil {
		l.r.mu.Lock()
		l.r.hookErr++
		l.r.mu.Unlock()
		l.r.log.Error("vrrp hook failed", "vrid", l.r.cfg.VirtualRouterID, "hook", what, "err", err)
	}
}

// send advertises with priority prio to the multicast group or to every unicast peer.
func (l *loop) send(prio uint8) {
	r := l.r
	adv := Advert{VRID: r.cfg.VirtualRouterID, Priority: prio, Interval: centis(r.cfg.AdvertInterval),
		Addrs: r.cfg.VIPs}
	src := r.tr.Source()
	dsts := r.cfg.UnicastPeers
	if len(dsts) == 0 {
		group := GroupV4
		if r.cfg.IPv6() {
			group = GroupV6
		}
		dsts = []netip.Addr{group}
	}
	var sent, failed uint64
	for _, dst := range dsts {
		l.buf = AppendAdvert(l.buf[:0], &adv, src, dst)
		if err := r.tr.Send(l.buf, dst); err != nil {
			failed++
			r.log.Debug("vrrp send failed", "vrid", r.cfg.VirtualRouterID, "dst", dst, "err", err)
			continue
		}
		sent++
	}
	r.mu.Lock()
	r.sent += sent
	r.sendErr += failed
	r.mu.Unlock()
}

func (l *loop) announce() {
	r := l.r
	var n uint64
	for _, vip := range r.cfg.VIPs {
		if err := r.tr.Announce(vip); err != nil {
			r.log.Debug("vrrp announce failed", "vip", vip, "err", err)
			continue
		}
		n++
	}
	r.mu.Lock()
	r.annc += n
	r.mu.Unlock()
}

// receive reads, validates and forwards advertisements for our VRID until the transport fails.
func (r *Router) receive(ctx context.Context, out chan<- received) error {
	buf := make([]byte, 1500)
	src := r.tr.Source()
	for {
		msg, info, err := r.tr.Recv(buf)
		if err != nil {
			return err
		}
		var p received
		if reason := r.check(msg, info, src, &p.adv); reason != dropNone {
			r.drops[reason].Add(1)
			continue
		}
		r.recvd.Add(1)
		if !slices.Equal(p.adv.Addrs, r.cfg.VIPs) {
			r.mismat.Add(1)
		}
		p.info = info
		select {
		case out <- p:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// check validates one received message (RFC 5798 section 7.1).
func (r *Router) check(msg []byte, info RecvInfo, self netip.Addr, adv *Advert) DropReason {
	if info.Src == self {
		return DropSelf
	}
	if info.TTL != vrrpTTL {
		return DropTTL
	}
	if len(r.cfg.UnicastPeers) > 0 && !slices.Contains(r.cfg.UnicastPeers, info.Src) {
		return DropPeer
	}
	if err := ParseAdvert(msg, info.Src, info.Dst, adv); err != nil {
		return reasonOf(err)
	}
	if adv.VRID != r.cfg.VirtualRouterID {
		return DropVRID
	}
	return dropNone
}
