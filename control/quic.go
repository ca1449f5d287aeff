package control

import (
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// encapQUIC adds the service's tunnel encapsulation and QUIC routing (with the backends'
// server IDs) to sp, whose Targets are s.backends in order: the primaries, then the
// fallbacks, as in the configuration.
func (s *svcState) encapQUIC(sp *dataplane.ServiceSpec) {
	c := &s.cfg
	if c.Method == config.MethodTunnel {
		sp.Encap, sp.EncapPort = c.Encap, c.EncapPort
	}
	if c.QUIC == nil {
		return
	}
	lb, err := c.QUIC.LB()
	prev, perr := c.QUIC.PreviousLBs()
	if err != nil || perr != nil { // refused by validation already: no QUIC routing rather than no service
		return
	}
	sp.QUIC, sp.QUICPrevious = lb, prev
	i := 0
	for _, list := range [][]config.Backend{c.Backends, c.Fallback} {
		for j := range list {
			if i < len(sp.Targets) {
				sp.Targets[i].ServerID = list[j].ServerID
			}
			i++
		}
	}
}

// vipRoute is the policy route (and, for a tunnel service, the encapsulation) of backend b's
// check through the VIP.
func (s *svcState) vipRoute(b *beState) VIPRoute {
	r := VIPRoute{Mark: throughVIPMark(b.id), VIP: s.cfg.VIP, Backend: b.addr, IfIndex: b.hop.IfIndex}
	if s.cfg.Method == config.MethodTunnel {
		r.Tunnel, r.Encap, r.EncapPort, r.TunnelSource = true, s.cfg.Encap, s.cfg.EncapPort, s.cfg.TunnelSource.Addr()
	}
	return r
}
