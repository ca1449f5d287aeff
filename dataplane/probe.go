package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/dataplane/xsk"
)

// ProbeResult is what Probe learnt about an interface by trying what New
// does: attach the XDP program and bind an AF_XDP socket.
type ProbeResult struct {
	// AttachedID is the id of an XDP program already on the interface; 0:
	// none. When one is attached Probe leaves it alone and tries no attach.
	AttachedID uint32
	// Native is nil when xlb's XDP program attached in native (driver)
	// mode, through a bpf_link; Generic, tried only when native failed, is
	// nil when it attached in generic (skb) mode. Both are nil when no
	// attach was tried.
	Native, Generic error
	// Attached says an attach was tried and one of the modes worked.
	Attached bool
	// ZeroCopy is nil when an AF_XDP socket bound to the queue with
	// XDP_ZEROCOPY; Copy, tried only when zero copy failed, is nil when it
	// bound in copy mode.
	ZeroCopy, Copy error
	// NeedWakeup: the kernel accepted XDP_USE_NEED_WAKEUP (every bind asks
	// for it, so it holds when either bind worked).
	NeedWakeup bool
}

// ErrNoBPFLink is matched by a ProbeResult's attach errors when the kernel
// cannot attach XDP through a bpf_link (before 5.9).
var ErrNoBPFLink = ebpf.ErrNotSupported

// Probe tries, on interface ifname in the calling thread's network
// namespace, what New would do: it attaches xlb's XDP program in native
// mode (generic when native fails) unless a program is attached already,
// binds an AF_XDP socket to queue with zero copy (copy mode when that
// fails), and undoes all of it before it returns. The error is for an
// interface that cannot be found; what failed is in the result. It needs
// the privileges of `xlb run`.
func Probe(ifname string, queue int) (ProbeResult, error) {
	var r ProbeResult
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return r, fmt.Errorf("interface %s: %w", ifname, err)
	}
	a := l.Attrs()
	if a.Xdp != nil && a.Xdp.Attached {
		r.AttachedID = a.Xdp.ProgId
	} else {
		r.attach(a.Index)
	}
	r.bind(a.Index, queue)
	return r, nil
}

func (r *ProbeResult) attach(ifindex int) {
	p, err := xdpprog.Attach(ifindex, xdpprog.Options{Mode: xdpprog.ModeNative})
	r.Native = err
	if err != nil {
		p, err = xdpprog.Attach(ifindex, xdpprog.Options{Mode: xdpprog.ModeGeneric})
		r.Generic = err
	}
	if err == nil {
		r.Attached = true
		_ = p.Close()
	}
}

func (r *ProbeResult) bind(ifindex, queue int) {
	try := func(zc xsk.ZeroCopy) error {
		u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 64})
		if err != nil {
			return err
		}
		defer u.Close()
		s, err := xsk.Open(u, xsk.Config{Ifindex: ifindex, Queue: queue, ZeroCopy: zc,
			RxSize: 32, TxSize: 32, FillSize: 32, CompletionSize: 32})
		if err != nil {
			return err
		}
		if zc == xsk.ZeroCopyOn && !s.ZeroCopyOn() {
			err = errors.New("bound, but the kernel reports copy mode")
		}
		return errors.Join(err, s.Close())
	}
	r.ZeroCopy = try(xsk.ZeroCopyOn)
	if r.ZeroCopy != nil {
		r.Copy = try(xsk.ZeroCopyOff)
	}
	r.NeedWakeup = r.ZeroCopy == nil || r.Copy == nil
}
