package control

import (
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// DataplaneConfig maps the configuration's interfaces onto the data path's.
func DataplaneConfig(c *config.Config) dataplane.Config {
	dc := dataplane.Config{ConnTableSize: c.ConnTable.Size, ConnTimeouts: c.ConnTable.Timeouts.Sched(),
		PersistSize: c.ConnTable.PersistenceSize}
	for _, in := range c.Interfaces {
		dc.Interfaces = append(dc.Interfaces, dataplane.InterfaceConfig{
			Name: in.Name, XDPMode: in.XDPMode.String(), ZeroCopy: in.ZeroCopy.String(), Cores: in.Cores,
			BusyPoll: in.BusyPoll})
	}
	return dc
}
