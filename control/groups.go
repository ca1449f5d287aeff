package control

import (
	"fmt"
	"slices"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
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
