package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/health"
)

// VRRPSet is the VRRP instances of a configuration (the vrrp section and the vrrp_instances),
// with their sync groups, notify programs and tracked scripts and interfaces. Make it with
// NewVRRP; Start runs it, Stop resigns every instance and cleans up. It is a VRRPSource.
type VRRPSet struct {
	sb      *Standby
	nodes   []*VRRPNode
	tracker *vrrpTracker
	log     *slog.Logger
	err     chan error
	cancel  context.CancelFunc
}

// newVRRPSet makes a node per instance of cfg, publishing through sb; optsFor, when set,
// gives each instance's router options (a test's transport).
func newVRRPSet(cfg *config.Config, sb *Standby, log *slog.Logger, optsFor func(name string) []ha.Option) (*VRRPSet, error) {
	insts := cfg.Instances()
	set := &VRRPSet{sb: sb, log: log, err: make(chan error, len(insts))}
	byName := map[string]*VRRPNode{}
	for _, v := range insts {
		var opts []ha.Option
		if optsFor != nil {
			opts = optsFor(v.Name)
		}
		n, err := newVRRPNode(v, sb, log, opts...)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", v.Name, err)
		}
		n.err = set.err
		set.nodes = append(set.nodes, n)
		byName[n.name] = n
	}
	for i := range cfg.VRRPSyncGroups {
		set.syncGroup(&cfg.VRRPSyncGroups[i], byName)
	}
	set.tracker = newVRRPTracker(cfg, set.nodes, log)
	return set, nil
}

// syncGroup joins the group's instances: their state changes go to the group, and its
// notify programs follow the group's state (master when all are, fault when one is, else
// backup).
func (s *VRRPSet) syncGroup(g *config.VRRPSyncGroup, byName map[string]*VRRPNode) {
	group := ha.NewSyncGroup()
	var notify *notifier
	if g.Notify != nil {
		notify = newNotifier(g.Notify, "GROUP", g.Name, s.log)
	}
	var mu sync.Mutex
	states := map[*VRRPNode]ha.State{}
	last := ha.Initialize
	for _, name := range g.Instances {
		n := byName[name]
		group.Add(n.har)
		states[n] = ha.Initialize
		n.onState = append(n.onState, func(from, to ha.State, prio uint8) {
			group.Changed(n.har, from, to)
			mu.Lock()
			states[n] = to
			st := groupState(states)
			changed := st != last
			last = st
			mu.Unlock()
			if changed {
				notify.send(st, prio)
			}
		})
		if notify != nil && name == g.Instances[0] {
			n.extra = append(n.extra, notify) // started and stopped with the first member
		}
	}
}

func groupState(states map[*VRRPNode]ha.State) ha.State {
	all := ha.Master
	for _, st := range states {
		switch {
		case st == ha.Fault:
			return ha.Fault
		case st != ha.Master:
			all = st
		}
	}
	return all
}

// Start runs the tracker and every instance.
func (s *VRRPSet) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.tracker.start(ctx)
	for _, n := range s.nodes {
		n.Start(ctx)
	}
}

// Stop resigns every instance and stops the tracker.
func (s *VRRPSet) Stop() {
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	wg.Wait()
	if s.cancel != nil {
		s.cancel()
	}
	s.tracker.wait()
}

// Err returns the channel a router failure arrives on (nil when s is nil).
func (s *VRRPSet) Err() <-chan error {
	if s == nil {
		return nil
	}
	return s.err
}

// Publisher is the Standby the controller publishes to.
func (s *VRRPSet) Publisher() *Standby { return s.sb }

// Collector exports every instance's state as Prometheus metrics.
func (s *VRRPSet) Collector() prometheus.Collector {
	cs := make(multiCollector, len(s.nodes))
	for i, n := range s.nodes {
		cs[i] = n.Collector()
	}
	return cs
}

// multiCollector is several collectors as one.
type multiCollector []prometheus.Collector

func (m multiCollector) Describe(ch chan<- *prometheus.Desc) {
	if len(m) > 0 {
		m[0].Describe(ch) // every instance describes the same metrics
	}
}

func (m multiCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m {
		c.Collect(ch)
	}
}

// VRRPStatus implements VRRPSource: the first instance, with every instance in Instances
// when there are several.
func (s *VRRPSet) VRRPStatus() VRRPStatus {
	st := s.nodes[0].VRRPStatus()
	if len(s.nodes) > 1 {
		for _, n := range s.nodes {
			st.Instances = append(st.Instances, n.VRRPStatus())
		}
	}
	return st
}

// Demote implements VRRPSource: every instance resigns.
func (s *VRRPSet) Demote() error {
	var errs []error
	for _, n := range s.nodes {
		errs = append(errs, n.Demote())
	}
	return errors.Join(errs...)
}

// stateName is keepalived's name of a state in notify arguments.
func stateName(st ha.State) string {
	switch st {
	case ha.Master:
		return "MASTER"
	case ha.Backup:
		return "BACKUP"
	case ha.Fault:
		return "FAULT"
	}
	return "STOP"
}

// notifier runs an instance's (or group's) notify programs, one at a time in the order of
// the state changes, each like an exec health check (own process group killed at the
// timeout, minimal environment, optional user), off the VRRP loop.
type notifier struct {
	cfg        *config.Notify
	kind, name string
	log        *slog.Logger
	jobs       chan []string
	done       chan struct{}
	once       sync.Once
	mu         sync.Mutex // guards closed and sends on jobs
	closed     bool
}

func newNotifier(cfg *config.Notify, kind, name string, log *slog.Logger) *notifier {
	return &notifier{cfg: cfg, kind: kind, name: name, log: log, jobs: make(chan []string, 32), done: make(chan struct{})}
}

// send queues the programs for state st (nil n: none). A full queue drops the oldest
// notification's turn: the VRRP loop never waits.
func (n *notifier) send(st ha.State, prio uint8) {
	if n == nil {
		return
	}
	var cmds [][]string
	switch st {
	case ha.Master:
		cmds = append(cmds, n.cfg.Master)
	case ha.Backup:
		cmds = append(cmds, n.cfg.Backup)
	case ha.Fault:
		cmds = append(cmds, n.cfg.Fault)
	case ha.Initialize:
		cmds = append(cmds, n.cfg.Stop)
	}
	if len(n.cfg.Any) > 0 {
		cmds = append(cmds, append(slices.Clone(n.cfg.Any), n.kind, n.name, stateName(st), strconv.Itoa(int(prio))))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range cmds {
		if len(c) == 0 || n.closed {
			continue
		}
		select {
		case n.jobs <- c:
		default:
			n.log.Warn("vrrp notify: queue full, program not run", "instance", n.name, "command", c)
		}
	}
}

func (n *notifier) start() {
	if n == nil {
		return
	}
	n.once.Do(func() { go n.run() })
}

func (n *notifier) run() {
	defer close(n.done)
	for cmd := range n.jobs {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
		_, err := (&health.Exec{Command: cmd, User: n.cfg.User}).Check(ctx)
		cancel()
		if err != nil {
			n.log.Warn("vrrp notify program failed", "instance", n.name, "command", cmd, "err", err)
		}
	}
}

// stop runs what is queued and waits (each program bounded by the timeout).
func (n *notifier) stop() {
	if n == nil {
		return
	}
	n.start() // never started: run the queue anyway
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.jobs)
	}
	n.mu.Unlock()
	select {
	case <-n.done:
	case <-time.After(n.cfg.Timeout * time.Duration(cap(n.jobs)+1)):
	}
}
