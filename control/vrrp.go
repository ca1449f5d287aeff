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

	mu         sync.Mutex
	last       *dataplane.Snapshot // the controller's latest snapshot
	forwarding bool
	changes    uint64
	guard      *crashGuard // follows the controller's snapshots; nil: none
}

// NewStandby returns a Standby publishing to pub, not forwarding.
func NewStandby(pub Publisher) *Standby { return &Standby{pub: pub} }

// Publish implements Publisher: it passes snap on while forwarding, and
// remembers it (publishing an empty snapshot) while standby.
func (s *Standby) Publish(snap *dataplane.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = snap
	if s.guard != nil {
		s.guard.update(snap)
	}
	return s.publishLocked()
}

// SetForwarding switches forwarding on (master) or off (backup) and
// republishes the latest snapshot accordingly. It is idempotent.
func (s *Standby) SetForwarding(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forwarding == on {
		return nil
	}
	s.forwarding = on
	s.changes++
	if s.last == nil {
		return nil // nothing published yet: the first Publish applies the mode
	}
	return s.publishLocked()
}

// Forwarding reports whether the data path is given the services.
func (s *Standby) Forwarding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forwarding
}

func (s *Standby) publishLocked() error {
	switch {
	case s.last == nil:
		return nil
	case s.forwarding:
		return s.pub.Publish(s.last)
	}
	empty, err := dataplane.NewSnapshot(nil, nil)
	if err != nil {
		return fmt.Errorf("standby snapshot: %w", err)
	}
	return s.pub.Publish(empty)
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
}

// router is what VRRPNode needs of an ha.Router.
type router interface {
	Status() ha.Status
	Demote() error
	Run(ctx context.Context) error
}

// VRRPNode runs the VRRP router of a vrrp section: its hooks switch a
// Standby in front of the data path and put the VIPs on the interface.
// Make one with NewVRRP; Start runs it, Stop resigns and cleans up.
type VRRPNode struct {
	cfg     ha.Config
	r       router
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
	n := &VRRPNode{cfg: v.Config, standby: sb, log: log, err: make(chan error, 1), done: make(chan struct{})}
	if err := n.cfg.Validate(); err != nil {
		return nil, err
	}
	n.addrs = func(on bool) error { return setVIPs(n.cfg.Interface, n.cfg.VIPs, on) }
	r, err := ha.New(n.cfg, ha.Hooks{OnMaster: n.onMaster, OnBackup: n.onBackup},
		append([]ha.Option{ha.WithLogger(log)}, opts...)...)
	if err != nil {
		return nil, err
	}
	n.r = r
	return n, nil
}

func (n *VRRPNode) onMaster() error {
	// Forward first: the VIPs are announced right after this returns.
	return errors.Join(n.standby.SetForwarding(true), n.addrs(true))
}

func (n *VRRPNode) onBackup() error {
	// The VIPs go first: a kernel that holds a VIP its data path no longer
	// steers answers the VIP's packets with resets (connection refused,
	// established connections reset); without the VIP it drops them and the
	// clients retransmit until the new master has them.
	aerr := n.addrs(false)
	return errors.Join(aerr, n.standby.SetForwarding(false))
}

// Start runs the router until Stop; a transport failure arrives on Err.
func (n *VRRPNode) Start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
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
	if err := n.standby.SetForwarding(false); err != nil {
		n.log.Warn("vrrp: stop forwarding", "err", err)
	}
	n.standby.mu.Lock()
	g := n.standby.guard
	var gerr error
	if g != nil {
		gerr = g.remove()
	}
	n.standby.mu.Unlock()
	if gerr != nil {
		n.log.Warn("vrrp: remove the crash guard", "err", gerr)
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
	return VRRPStatus{Status: n.r.Status(), VIPs: n.cfg.VIPs, Forwarding: n.standby.Forwarding()}
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

// NewVRRP returns the VRRP node of section v in front of the data path dp:
// the controller publishes to its Publisher (a Standby), which forwards
// only while this host is the master and keeps an nftables crash guard
// (dropping the VIPs' packets should the process die holding them) in line
// with the snapshots. Nothing runs before Start.
func NewVRRP(v *config.VRRP, dp Publisher, log *slog.Logger, opts ...ha.Option) (*VRRPNode, error) {
	if log == nil {
		log = slog.Default()
	}
	sb := NewStandby(dp)
	sb.guard = &crashGuard{vrid: v.VirtualRouterID, vips: slices.Clone(v.VIPs), apply: nft, log: log}
	n, err := newVRRPNode(v, sb, log, opts...)
	if err != nil {
		return nil, fmt.Errorf("vrrp: %w", err)
	}
	return n, nil
}
