package dataplane

import (
	"fmt"
	"net/netip"
)

// PortRange is an inclusive range of service ports (Lo >= 1).
type PortRange struct {
	Lo, Hi uint16
}

// MaxFrontends is the most (VIP, port) pairs a snapshot may listen on: the XDP program's
// services map holds that many.
const MaxFrontends = 4096

// frontend is one (VIP, port) a service listens on.
type frontend struct {
	vip  [16]byte
	ip   netip.Addr
	port uint16
}

// checkGroup validates a service group's VIPs and Ports (see ServiceSpec) and fills sv's
// lists: every VIP (the primary first) and every port range (or the one port).
func checkGroup(sp *ServiceSpec, sv *service) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("service %q: %w: %s", sp.Name, ErrBadService, fmt.Sprintf(format, a...))
	}
	sv.vips = []netip.Addr{sv.vipIP}
	for _, v := range sp.VIPs {
		v = v.Unmap()
		if v == sv.vipIP {
			continue
		}
		if !v.IsValid() || v.IsUnspecified() {
			return bad("vip %v is not a usable address", v)
		}
		if v.Is6() != sv.v6 {
			return bad("vips %v and %v are of different address families", sv.vipIP, v)
		}
		sv.vips = append(sv.vips, v)
	}
	sv.ports = sp.Ports
	if len(sv.ports) == 0 {
		sv.ports = []PortRange{{sp.Port, sp.Port}}
	}
	for _, r := range sp.Ports {
		if r.Lo == 0 || r.Hi < r.Lo {
			return bad("port range %d-%d", r.Lo, r.Hi)
		}
	}
	if sp.Method == MethodNAT && (len(sv.vips) > 1 || len(sv.ports) > 1 || sv.ports[0].Lo != sv.ports[0].Hi) {
		return bad("method nat with several vips or ports (replies are mapped back without state)")
	}
	return nil
}

// each calls fn for every (VIP, port) sv listens on.
func (sv *service) each(fn func(f frontend) bool) bool {
	for _, ip := range sv.vips {
		a, _ := addr16(ip)
		for _, r := range sv.ports {
			for p := int(r.Lo); p <= int(r.Hi); p++ {
				if !fn(frontend{vip: a, ip: ip, port: uint16(p)}) {
					return false
				}
			}
		}
	}
	return true
}

// frontends returns how many (VIP, port) pairs sp listens on.
func frontends(sp *ServiceSpec) int {
	nv := 1
	for _, v := range sp.VIPs {
		if v.Unmap() != sp.VIP.Unmap() {
			nv++
		}
	}
	np := 1
	if len(sp.Ports) > 0 {
		np = 0
		for _, r := range sp.Ports {
			np += max(int(r.Hi)-int(r.Lo)+1, 0)
		}
	}
	return nv * np
}

// indexFrontends puts every (VIP, port) of sv (service i, not yet in s.services) into the
// snapshot's service lookup, refusing one an earlier service has or sv lists twice.
func (s *Snapshot) indexFrontends(sv *service, i int) error {
	var err error
	sv.each(func(f frontend) bool {
		k := tupleKey{addr: f.vip, port: f.port, proto: sv.spec.Proto, v6: sv.v6}
		if s.byVIP.insert(k, i) {
			return true
		}
		other := "itself"
		if o := s.byVIP.get(&k); o != i {
			other = fmt.Sprintf("service %q", s.services[o].spec.Name)
		}
		err = fmt.Errorf("service %q: %w: %s port %d proto %d is also %s",
			sv.spec.Name, ErrDupService, f.ip, f.port, sv.spec.Proto, other)
		return false
	})
	return err
}

// PersistStats returns how many slots of the persistence table, shared by the workers,
// have held a client, and how many it has (Config.PersistSize).
func (d *Dataplane) PersistStats() (used, capacity int) {
	if d.persist == nil {
		return 0, 0
	}
	return d.persist.Used(), d.persist.Capacity()
}
