package testnet

import (
	"fmt"
	"strings"
)

// Backend returns the backend with the given name ("b0", ...), or nil.
func (n *Net) Backend(name string) *Backend {
	for _, b := range n.Backends {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Describe returns a table of the topology: one line per interface with its namespace,
// name, index, MAC and addresses, then the VIPs (for `xlb demo` and failing tests).
func (n *Net) Describe() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "testnet %s (%v), switch namespace %s\n", n.ID, n.Kind, n.Switch.Name())
	for _, h := range n.hosts() {
		for _, i := range h.Ifaces {
			a6 := "-"
			if i.Addr6.IsValid() {
				a6 = i.Addr6.String()
			}
			fmt.Fprintf(&sb, "  %-22s %-5s idx %-3d %s  %-17s %-22s mtu %d, port %s\n",
				h.Name(), i.Name, i.Index, i.MAC, i.Addr, a6, i.MTU, i.Peer)
		}
	}
	fmt.Fprintf(&sb, "  VIP %s", n.VIP)
	if n.VIP6.IsValid() {
		fmt.Fprintf(&sb, ", %s", n.VIP6)
	}
	sb.WriteString("\n")
	return sb.String()
}
