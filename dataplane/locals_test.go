package dataplane

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestLocalsFollowAddresses: an address added to (then removed from) an interface after New
// reaches (then leaves) the XDP program's locals map without a Publish, from the kernel's
// address notifications.
func TestLocalsFollowAddresses(t *testing.T) {
	ns, _, _ := vethPair(t, 1)
	dp := newIn(t, ns, Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 12,
		Interfaces: []InterfaceConfig{{Name: "xa"}}})
	a := netip.MustParseAddr("198.18.7.7")
	has := func() bool { return slices.Contains(dp.ifaces[0].prog.Locals(), a) }
	wait := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for has() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%v in locals: %v, want %v (locals %v)", a, has(), want, dp.ifaces[0].prog.Locals())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !slices.Contains(dp.ifaces[0].prog.Locals(), netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("loopback address not in locals at New: %v", dp.ifaces[0].prog.Locals())
	}
	wait(false)
	if err := ns.AddAddr("xb", netip.PrefixFrom(a, 32)); err != nil {
		t.Fatal(err)
	}
	wait(true)
	if err := ns.DelAddr("xb", netip.PrefixFrom(a, 32)); err != nil {
		t.Fatal(err)
	}
	wait(false)
}
