package control

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/ha"
)

// groupSpec gives a service group's VIPs and port ranges to the data path.
func groupSpec(c *config.Service, sp *dataplane.ServiceSpec) {
	if len(c.VIPs) > 0 {
		sp.VIPs = slices.Clone(c.VIPs)
	}
	for _, r := range c.Ports {
		sp.Ports = append(sp.Ports, dataplane.PortRange{Lo: r.Lo, Hi: r.Hi})
	}
}

// groupStatus fills the status fields of the IPVS-style service options.
func groupStatus(st *ServiceStatus, c *config.Service) {
	if c.IsGroup() {
		vips, ports := c.Frontends()
		for _, v := range vips {
			st.VIPs = append(st.VIPs, v.String())
		}
		for _, r := range ports {
			st.Ports = append(st.Ports, r.String())
		}
	}
	if p := c.Persistence; p != nil {
		st.Persistence = fmt.Sprintf("%v/%d", p.Timeout, p.Prefix)
	}
	st.OnePacket = c.OnePacket
	if c.SlowStart > 0 {
		st.SlowStart = c.SlowStart.String()
	}
}

// appendGuardDrops adds the crash guard's drops of service sp: every (VIP, port) of it
// whose VIP is one of vips (a group has several; the snapshot bounds them to
// dataplane.MaxFrontends).
func appendGuardDrops(drops []ha.Drop, sp *dataplane.ServiceSpec, vips []netip.Addr) []ha.Drop {
	all := append([]netip.Addr{sp.VIP}, sp.VIPs...)
	ports := sp.Ports
	if len(ports) == 0 {
		ports = []dataplane.PortRange{{Lo: sp.Port, Hi: sp.Port}}
	}
	var seen []netip.Addr
	for _, v := range all {
		if !slices.Contains(vips, v) || slices.Contains(seen, v) {
			continue
		}
		seen = append(seen, v)
		for _, r := range ports {
			for p := int(r.Lo); p <= int(r.Hi); p++ {
				drops = append(drops, ha.Drop{VIP: v, Port: uint16(p), Proto: sp.Proto})
			}
		}
	}
	return drops
}

// PersistStatsSource is an optional extension of a StatsSource: the persistence table's
// occupancy. *dataplane.Dataplane is one.
type PersistStatsSource interface {
	PersistStats() (used, capacity int)
}

var (
	descPersistUsed = prometheus.NewDesc("xlb_persistence_entries", "Slots of the persistence table that have held a client (it replaces the client seen longest ago when a bucket is full).", nil, nil)
	descPersistCap  = prometheus.NewDesc("xlb_persistence_capacity", "Slots of the persistence table (conn_table.persistence_size).", nil, nil)
)

// collectPersist sends the persistence table's gauges when the data path has them.
func collectPersist(ch chan<- prometheus.Metric, src StatsSource) {
	ps, ok := src.(PersistStatsSource)
	if !ok {
		return
	}
	used, capacity := ps.PersistStats()
	gauge(ch, descPersistUsed, float64(used))
	gauge(ch, descPersistCap, float64(capacity))
}

// listFlags returns the ipvsadm -Ln flags of service c: "persistent 300 mask
// 255.255.255.0" (IPv6: the prefix length), "ops", and for a group "group N pairs".
func listFlags(c *config.Service) string {
	var f []string
	if p := c.Persistence; p != nil {
		mask := fmt.Sprint(p.Prefix)
		if c.VIP.Is4() {
			mask = net.IP(net.CIDRMask(p.Prefix, 32)).String()
		}
		f = append(f, fmt.Sprintf("persistent %d mask %s", int(p.Timeout.Seconds()), mask))
	}
	if c.OnePacket {
		f = append(f, "ops")
	}
	if c.IsGroup() {
		vips, ports := c.Frontends()
		n := 0
		for _, r := range ports {
			n += r.Len()
		}
		f = append(f, fmt.Sprintf("group %d pairs", n*len(vips)))
	}
	return strings.Join(f, " ")
}
