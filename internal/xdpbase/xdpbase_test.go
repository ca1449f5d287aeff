package xdpbase_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/internal/xdpbase"
)

// On a veth pair: drop on xb counts what xb receives; swap on xa sends every frame back to
// xb with the MACs exchanged, so xb's count also includes the frames swap returned.
func TestDropAndSwap(t *testing.T) {
	testnet.Skip(t)
	var id [3]byte
	_, _ = rand.Read(id[:])
	ns, err := lab.NewNS(hex.EncodeToString(id[:]), "xdpbase")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	// No IPv6 on the pair: its neighbour discovery would add frames to the count.
	if err := ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"); err != nil {
		t.Fatal(err)
	}
	xa, xb, err := ns.AddVeth("xa", "xb", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var drop, swap *xdpbase.Baseline
	if err := ns.Do(func() (err error) {
		if _, err := xdpbase.Attach(xa.Attrs().Index, "nope"); !errors.Is(err, xdpbase.ErrName) {
			t.Errorf("unknown name: %v, want ErrName", err)
		}
		if drop, err = xdpbase.Attach(xb.Attrs().Index, xdpbase.Drop); err != nil {
			return err
		}
		swap, err = xdpbase.Attach(xa.Attrs().Index, xdpbase.Swap)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	defer swap.Close()
	raw, err := ns.RawSocket("xb")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	frame := make([]byte, 60)
	copy(frame[0:6], xa.Attrs().HardwareAddr)
	copy(frame[6:12], xb.Attrs().HardwareAddr)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType
	const n = 20
	for range n {
		if err := raw.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := drop.Packets()
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			break
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("drop counted %d frames, want %d (swapped back by xa)", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := swap.Packets(); err != nil || got != n {
		t.Errorf("swap counted %d (%v), want %d", got, err, n)
	}
}
