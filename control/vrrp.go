package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/ha"
)

// Standby is a Publisher between the controller and the data path that
// forwards only while this host is the VRRP master. While standby it
// publishes, in place of each snapshot, one without services: the data
// path then steers none of the VIPs' frames (its XDP program passes them
// to the kernel, which does not hold the VIPs on a backup) and sends none.
// The workers keep their connection tables and the controller keeps its
// backend IDs and Maglev tables, so when forwarding resumes the flows the
// previous master carried go to the same backends. A Standby starts
// standby.
type Standby struct {
	pub Publisher

	mu      sync.Mutex
	last    *dataplane.Snapshot // the controller's latest snapshot
	owners  map[string][]netip.Addr
	managed []netip.Addr // the VIPs of every VRRP instance
	changes uint64
	guards  []*crashGuard // follow the controller's snapshots
}

// NewStandby returns a Standby publishing to pub, not forwarding.
func NewStandby(pub Publisher) *Standby { return &Standby{pub: pub, owners: map[string][]netip.Addr{}} }

// Publish implements Publisher: it passes snap on while forwarding, and
// remembers it (publishing an empty snapshot) while standby.
func (s *Standby) Publish(snap *dataplane.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = snap
	for _, g := range s.guards {
		g.update(snap)
	}
	return s.publishLocked()
}

// SetForwarding switches forwarding of every service on (master) or off
// (backup) and republishes the latest snapshot accordingly. It is
// idempotent.
func (s *Standby) SetForwarding(on bool) error { return s.setOwner("", nil, on) }

// setOwner records that instance name is master (on) of vips, or no longer
// is, and republishes. A service is forwarded while the instance holding its
// VIP is master; one whose VIP no instance holds, while any instance is
// master; nil vips stand for every service.
func (s *Standby) setOwner(name string, vips []netip.Addr, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, was := s.owners[name]
	if was == on {
		return nil
	}
	if on {
		s.owners[name] = vips
	} else {
		delete(s.owners, name)
	}
	s.changes++
	if s.last == nil {
		return nil // nothing published yet: the first Publish applies the mode
	}
	return s.publishLocked()
}

// owns reports whether instance name is master here (its VIPs' services are
// forwarded).
func (s *Standby) owns(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.owners[name]
	return ok
}

// Forwarding reports whether the data path is given services (this host is
// master of at least one instance).
func (s *Standby) Forwarding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.owners) > 0
}

func (s *Standby) publishLocked() error {
	if s.last == nil {
		return nil
	}
	if len(s.owners) == 0 {
		empty, err := dataplane.NewSnapshot(nil, nil)
		if err != nil {
			return fmt.Errorf("standby snapshot: %w", err)
		}
		return s.pub.Publish(empty)
	}
	owned := map[netip.Addr]bool{}
	for _, vips := range s.owners {
		if vips == nil {
			return s.pub.Publish(s.last)
		}
		for _, a := range vips {
			owned[a] = true
		}
	}
	var keep []dataplane.ServiceSpec
	for i := range s.last.NumServices() {
		if sp := s.last.Service(i); owned[sp.VIP] || !slices.Contains(s.managed, sp.VIP) {
			keep = append(keep, sp)
		}
	}
	if len(keep) == s.last.NumServices() {
		return s.pub.Publish(s.last)
	}
	snap, err := dataplane.NewSnapshot(keep, s.last.Routes())
	if err != nil {
		return fmt.Errorf("standby snapshot: %w", err)
	}
	return s.pub.Publish(snap)
}

// VRRPSource is what the API and the metrics need of the running VRRP
// router.
type VRRPSource interface {
	VRRPStatus() VRRPStatus
	// Demote makes a master resign (a backup takes over after its skew
	// time) and keeps this host from preempting it again.
	Demote() error
}

// VRRPStatus is the API's view of the VRRP router (GET /api/v1/vrrp): the
// router's own status and what this host does with it.
type VRRPStatus struct {
	ha.Status
	VIPs []netip.Addr `json:"vips"`
	// Forwarding: the data path has the services (true only as master).
	Forwarding bool `json:"forwarding"`
	// Name is the instance's name; Instances lists every instance when
	// there are several (this status is then the first one's).
	Name      string       `json:"name,omitempty"`
	Instances []VRRPStatus `json:"instances,omitempty"`
}

// router is what VRRPNode needs of an ha.Router.
type router interface {
	Status() ha.Status
	Demote() error
	Run(ctx context.Context) error
	SetFault(on bool)
	SetPriority(p uint8)
}

// VRRPNode runs the VRRP router of one instance: its hooks switch a
// Standby in front of the data path and put the VIPs on the interface.
// NewVRRP makes one per instance (a VRRPSet).
type VRRPNode struct {
	cfg     ha.Config
	name    string
	r       router
	har     *ha.Router // r, for a sync group
	notify  *notifier  // nil: no notify programs
	onState []func(from, to ha.State, prio uint8)
	extra   []*notifier // a sync group's notifier, run alongside this node's
	guard   *crashGuard
	standby *Standby
	log     *slog.Logger
	// addrs puts the VIPs on the interface (on) or takes them off; it must
	// be idempotent.
	addrs  func(on bool) error
	cancel context.CancelFunc
	done   chan struct{}
	err    chan error // Run's error, if it failed
}

// newVRRPNode makes the router for section v; the hooks drive sb.
func newVRRPNode(v *config.VRRP, sb *Standby, log *slog.Logger, opts ...ha.Option) (*VRRPNode, error) {
	n := &VRRPNode{cfg: v.Config, name: v.Name, standby: sb, log: log, err: make(chan error, 1), done: make(chan struct{})}
	if n.name == "" {
		n.name = "vrrp"
	}
	if err := n.cfg.Validate(); err != nil {
		return nil, err
	}
	sb.mu.Lock()
	sb.managed = append(sb.managed, n.cfg.VIPs...)
	sb.mu.Unlock()
	n.addrs = func(on bool) error { return setVIPs(n.cfg.Interface, n.cfg.VIPs, on) }
	if v.Notify != nil {
		n.notify = newNotifier(v.Notify, "INSTANCE", n.name, log)
	}
	r, err := ha.New(n.cfg, ha.Hooks{OnMaster: n.onMaster, OnBackup: n.onBackup, OnState: n.stateChanged},
		append([]ha.Option{ha.WithLogger(log.With("instance", n.name))}, opts...)...)
	if err != nil {
		return nil, err
	}
	n.r, n.har = r, r
	return n, nil
}

func (n *VRRPNode) onMaster() error {
	// Forward first: the VIPs are announced right after this returns.
	return errors.Join(n.standby.setOwner(n.name, n.cfg.VIPs, true), n.addrs(true))
}

// stateChanged runs the notify programs and tells the sync group.
func (n *VRRPNode) stateChanged(from, to ha.State, prio uint8) {
	n.notify.send(to, prio)
	for _, f := range n.onState {
		f(from, to, prio)
	}
}

func (n *VRRPNode) onBackup() error {
	// The VIPs go first: a kernel that holds a VIP its data path no longer
	// steers answers the VIP's packets with resets (connection refused,
	// established connections reset); without the VIP it drops them and the
	// clients retransmit until the new master has them.
	aerr := n.addrs(false)
	return errors.Join(aerr, n.standby.setOwner(n.name, n.cfg.VIPs, false))
}

// Start runs the router until Stop; a transport failure arrives on Err.
func (n *VRRPNode) Start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
	n.notify.start()
	for _, x := range n.extra {
		x.start()
	}
	go func() {
		defer close(n.done)
		if err := n.r.Run(ctx); err != nil {
			n.err <- err
		}
	}()
}

// Stop resigns (a master sends priority 0 and stops forwarding), waits for
// the router, makes sure the VIPs are off the interface and removes the
// crash guard.
func (n *VRRPNode) Stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
	if err := n.addrs(false); err != nil {
		n.log.Warn("vrrp: remove the VIPs from the interface", "interface", n.cfg.Interface, "err", err)
	}
	if err := n.standby.setOwner(n.name, n.cfg.VIPs, false); err != nil {
		n.log.Warn("vrrp: stop forwarding", "err", err)
	}
	n.notify.stop() // after Run's last notification (stop)
	for _, x := range n.extra {
		x.stop()
	}
	if n.guard != nil {
		n.standby.mu.Lock()
		gerr := n.guard.remove()
		n.standby.mu.Unlock()
		if gerr != nil {
			n.log.Warn("vrrp: remove the crash guard", "err", gerr)
		}
	}
}

// Err returns the channel a router failure arrives on (nil, never ready,
// when n is nil).
func (n *VRRPNode) Err() <-chan error {
	if n == nil {
		return nil
	}
	return n.err
}

// Publisher is the Standby the controller publishes to: it passes the
// snapshots on to the data path only while this host is the master.
func (n *VRRPNode) Publisher() *Standby { return n.standby }

// Collector exports the router's state as Prometheus metrics.
func (n *VRRPNode) Collector() prometheus.Collector { return vrrpCollector{n} }

// Demote implements VRRPSource.
func (n *VRRPNode) Demote() error { return n.r.Demote() }

// VRRPStatus implements VRRPSource.
func (n *VRRPNode) VRRPStatus() VRRPStatus {
	return VRRPStatus{Status: n.r.Status(), Name: n.name, VIPs: n.cfg.VIPs, Forwarding: n.standby.owns(n.name)}
}

// setVIPs adds each VIP (/32 or /128, without duplicate address detection)
// to interface ifname, or removes it; an address already there (or already
// gone) is not an error.
func setVIPs(ifname string, vips []netip.Addr, on bool) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("vrrp interface %s: %w", ifname, err)
	}
	var errs []error
	for _, vip := range vips {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())}}
		if vip.Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if on {
			err = netlink.AddrAdd(l, a)
			if errors.Is(err, unix.EEXIST) {
				err = nil
			}
		} else {
			err = netlink.AddrDel(l, a)
			if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("vip %s on %s: %w", vip, ifname, err))
		}
	}
	return errors.Join(errs...)
}

// NewVRRP returns the VRRP instances of cfg (the vrrp section and the
// vrrp_instances) in front of the data path dp: the controller publishes to
// their Publisher (a Standby), which forwards a service only while the
// instance holding its VIP is master and keeps an nftables crash guard per
// instance (dropping the VIPs' packets should the process die holding them)
// in line with the snapshots. opts apply to every instance's router.
// Nothing runs before Start; nil when cfg has no instance.
func NewVRRP(cfg *config.Config, dp Publisher, log *slog.Logger, opts ...ha.Option) (*VRRPSet, error) {
	if len(cfg.Instances()) == 0 {
		return nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	sb := NewStandby(dp)
	set, err := newVRRPSet(cfg, sb, log, func(string) []ha.Option { return opts })
	if err != nil {
		return nil, fmt.Errorf("vrrp: %w", err)
	}
	for _, n := range set.nodes {
		n.guard = newCrashGuard(n.cfg.VirtualRouterID, n.cfg.VIPs, log)
		sb.guards = append(sb.guards, n.guard)
	}
	return set, nil
}
