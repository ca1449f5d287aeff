package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
)

// locals keeps the XDP programs' locals maps equal to the host's addresses (every
// interface's, in the Dataplane's network namespace), so that a packet from a NAT backend to
// the host itself (the reply to control's own health check of the backend) goes to the
// kernel and not to the workers as if it were a NAT reply to a client.
//
// It follows the kernel's address notifications (RTM_NEWADDR/RTM_DELADDR) and relists all
// addresses on each one rather than applying the change: an address on two interfaces, or a
// lost notification, cannot leave the map wrong. Each Publish relists too, so a failed
// subscription only delays an update to the next snapshot. A map lookup per NAT reply was
// chosen over bpf_fib_lookup (which would say NOT_FWDED for a local destination) because it
// is a single hash lookup and costs nothing to packets that are not NAT replies.
type locals struct {
	mu     sync.Mutex // serialises syncs
	h      *netlink.Handle
	ifaces []*iface
	done   chan struct{}
	wg     sync.WaitGroup
	err    error // the last sync's error, under mu
}

// startLocals lists the host's addresses into the programs and subscribes to changes, in
// the calling thread's network namespace.
func startLocals(ifaces []*iface) (*locals, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("local addresses: %w", err)
	}
	l := &locals{h: h, ifaces: ifaces, done: make(chan struct{})}
	updates := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(updates, l.done, netlink.AddrSubscribeOptions{
		ErrorCallback: func(error) {}, // the next Publish relists
	}); err != nil {
		h.Close()
		return nil, fmt.Errorf("local addresses: subscribe: %w", err)
	}
	if err := l.sync(); err != nil {
		l.close()
		return nil, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for range updates {
			// Coalesce a burst of notifications into one relist.
			for drained := false; !drained; {
				select {
				case _, ok := <-updates:
					if !ok {
						return
					}
				default:
					drained = true
				}
			}
			_ = l.sync() // kept in l.err; the next Publish retries
		}
	}()
	return l, nil
}

// sync lists every address of the namespace and sets the programs' locals maps to them.
func (l *locals) sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	addrs, err := l.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		l.err = fmt.Errorf("local addresses: list: %w", err)
		return l.err
	}
	list := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			list = append(list, ip.Unmap())
		}
	}
	var errs []error
	for _, ifc := range l.ifaces {
		if err := ifc.prog.SetLocals(list); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ifc.info.Name, err))
		}
	}
	l.err = errors.Join(errs...)
	return l.err
}

// close ends the subscription and waits for the goroutine that follows it.
func (l *locals) close() {
	close(l.done)
	l.wg.Wait()
	l.h.Close()
}
