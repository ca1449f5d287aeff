package lab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// XDP verdicts (linux/bpf.h enum xdp_action).
const (
	xdpPass = 2
	xdpTX   = 3
)

// attachXDPVerdict attaches, in native (driver) mode, an XDP program that returns verdict
// for every frame to ifname in the namespace. The attachment holds the program; it goes
// away with the interface.
func (n *NS) attachXDPVerdict(ifname string, verdict int32) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xlb_testnet",
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("%s: %w: load xdp program: %w", n.name, ErrUnsupported, err)
	}
	defer prog.Close()
	err = n.Do(func() error {
		// The package-level netlink calls open their socket on this thread, so in n.
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), nl.XDP_FLAGS_DRV_MODE)
	})
	if err != nil {
		return fmt.Errorf("%s: attach xdp to %s: %w", n.name, ifname, err)
	}
	return nil
}

// AttachXDPPass attaches a native XDP program that passes every frame to ifname. On a
// veth this turns on the NAPI receive path, which is the only one that accepts frames
// its peer sends with XDP_TX or XDP_REDIRECT (GRO, the other way to turn it on, is off
// here): see Config.PeerXDP.
func (n *NS) AttachXDPPass(ifname string) error { return n.attachXDPVerdict(ifname, xdpPass) }
