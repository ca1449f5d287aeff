package lab

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// AddVeth makes a veth pair a/b inside n with the given MTU (0: 1500) and number of rx and
// tx queues on each end (0: 1), turns their offloads off (see OffloadsOff), sets both up
// and returns the two links as the kernel then reports them (MACs, indexes, state).
func (n *NS) AddVeth(a, b string, mtu, queues int) (la, lb netlink.Link, err error) {
	if mtu == 0 {
		mtu = 1500
	}
	queues = max(1, queues)
	nl := n.Handle()
	attrs := netlink.LinkAttrs{Name: a, MTU: mtu, NumTxQueues: queues, NumRxQueues: queues}
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: b,
		PeerNumTxQueues: uint32(queues), PeerNumRxQueues: uint32(queues)}); err != nil {
		return nil, nil, fmt.Errorf("add veth %s/%s in %s: %w", a, b, n.Name(), err)
	}
	links := make([]netlink.Link, 2)
	for i, name := range []string{a, b} {
		if err := n.OffloadsOff(name); err != nil {
			return nil, nil, err
		}
		l, err := nl.LinkByName(name)
		if err == nil {
			err = nl.LinkSetUp(l)
		}
		if err == nil {
			l, err = nl.LinkByName(name)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("set %s up in %s: %w", name, n.Name(), err)
		}
		links[i] = l
	}
	return links[0], links[1], nil
}
