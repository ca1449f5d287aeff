package xdpbase

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
)

// Baseline is one of the reference programs attached to an interface.
type Baseline struct {
	objs benchObjects
	link link.Link
}

// Baseline programs.
const (
	Drop = "drop" // XDP_DROP every frame: the offered load
	Swap = "swap" // swap the MACs and XDP_TX: the in-kernel l2fwd limit
)

// ErrName is returned for a program name that is neither Drop nor Swap.
var ErrName = errors.New("xdpbase: unknown baseline program")

// Attach attaches the baseline program name (Drop or Swap) to ifindex in native mode. Call it
// in the interface's network namespace.
func Attach(ifindex int, name string) (*Baseline, error) {
	b := new(Baseline)
	if err := loadBenchObjects(&b.objs, nil); err != nil {
		return nil, fmt.Errorf("load baseline programs: %w", err)
	}
	prog := b.objs.Drop
	switch name {
	case Drop:
	case Swap:
		prog = b.objs.Swap
	default:
		b.objs.Close()
		return nil, fmt.Errorf("%w %q", ErrName, name)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		b.objs.Close()
		return nil, fmt.Errorf("attach baseline %s to ifindex %d: %w", name, ifindex, err)
	}
	b.link = l
	return b, nil
}

// Close detaches and releases the baseline program.
func (b *Baseline) Close() error {
	err := b.link.Close()
	if cerr := b.objs.Close(); err == nil {
		err = cerr
	}
	return err
}

// Packets returns how many frames the baseline program saw, over all CPUs.
func (b *Baseline) Packets() (uint64, error) {
	var per []uint64
	if err := b.objs.Packets.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read baseline packet count: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}
