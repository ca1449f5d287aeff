package control

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/control/internal/probeencap"
)

// Checks through the VIP of a tunnel service: the probe, routed to the backend's MAC like a
// dr service's (see throughvip.go), is encapsulated on the way out by a tc egress program
// (package probeencap) keyed by the probe's mark, with the outer headers the data path uses
// for the service (IPIP, GUE or FOU, outer IPv4). The backend must decapsulate it and own
// the VIP, as for forwarded traffic.

// probeEncap keeps the egress program and its marks in step with the wanted routes.
type probeEncap struct {
	prog  *probeencap.Program
	marks map[uint32]bool
}

func (pe *probeEncap) set(h *netlink.Handle, want map[uint32]VIPRoute) error {
	n := 0
	for _, r := range want {
		if r.Tunnel {
			n++
		}
	}
	if n == 0 {
		return pe.close(h)
	}
	if pe.prog == nil {
		p, err := probeencap.Load()
		if err != nil {
			return fmt.Errorf("through vip: %w", err)
		}
		pe.prog, pe.marks = p, map[uint32]bool{}
	}
	var errs []error
	for m := range pe.marks {
		if r, ok := want[m]; !ok || !r.Tunnel {
			if err := pe.prog.Delete(m); err != nil {
				errs = append(errs, err)
			}
			delete(pe.marks, m)
		}
	}
	for m, r := range want {
		if !r.Tunnel {
			continue
		}
		if err := pe.prog.Attach(h, r.IfIndex); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := pe.prog.Set(m, r.TunnelSource, r.Backend, r.Encap, r.EncapPort); err != nil {
			errs = append(errs, err)
			continue
		}
		pe.marks[m] = true
	}
	return errors.Join(errs...)
}

// close detaches and releases the program, if loaded.
func (pe *probeEncap) close(h *netlink.Handle) error {
	if pe.prog == nil {
		return nil
	}
	err := errors.Join(pe.prog.Detach(h), pe.prog.Close())
	pe.prog, pe.marks = nil, nil
	return err
}
