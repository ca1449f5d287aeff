package control

import (
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
