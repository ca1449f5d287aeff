package lab

import (
	"fmt"
	"strings"
	"time"
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

// Unplug takes h off the network, like a pulled cable: the switch-side ends of its veths
// go down, so h sees no carrier and nothing reaches it (connects to it time out, unlike
// a killed server, which refuses them). Its own configuration stays; Plug restores it.
func (n *Net) Unplug(h *Host) error { return n.setPlugged(h, false) }

// Plug puts h back on the network after Unplug and waits until its links are up.
func (n *Net) Plug(h *Host) error {
	if err := n.setPlugged(h, true); err != nil {
		return err
	}
	return n.waitUp(5 * time.Second)
}

func (n *Net) setPlugged(h *Host, up bool) error {
	for _, i := range h.Ifaces {
		l, err := n.Switch.nl.LinkByName(i.Peer)
		if err != nil {
			return fmt.Errorf("%s: find %s: %w", n.Switch.name, i.Peer, err)
		}
		set := n.Switch.nl.LinkSetDown
		if up {
			set = n.Switch.nl.LinkSetUp
		}
		if err := set(l); err != nil {
			return fmt.Errorf("%s: set %s up=%v: %w", n.Switch.name, i.Peer, up, err)
		}
	}
	return nil
}

// Describe returns a table of the topology: one line per interface with its namespace,
// name, index, MAC and addresses, then the VIPs (for `xlb demo` and failing tests).
func (n *Net) Describe() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "lab %s (%v), switch namespace %s\n", n.ID, n.Kind, n.Switch.Name())
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
