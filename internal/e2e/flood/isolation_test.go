package flood

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestIsolation: two services on one host, a round-robin service holding 24 idle
// long-lived connections and another service flooded with SYNs from random sources that
// overflow the (small) connection table. Without a table share the flood evicts the idle
// connections and round robin sends their next packets to other backends: requests fail.
// With the flooded service at table_share 50 they all keep their backends.
func TestIsolation(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, DisableIPv6: true})
	yaml := func(share int) string {
		y := fmt.Sprintf("interfaces: [{name: eth0}]\nservices:\n"+
			"  - name: kept\n    vip: %s\n    port: 80\n    scheduler: rr\n    backends:\n", tn.VIP)
		for _, be := range tn.Backends {
			y += fmt.Sprintf("      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		y += "    health: {kind: none}\n"
		y += fmt.Sprintf("  - name: flooded\n    vip: %s\n    port: 81\n    table_share: %d\n    backends:\n", tn.VIP, share)
		for _, be := range tn.Backends {
			y += fmt.Sprintf("      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		return y + "    health: {kind: none}\n"
	}
	cfg, err := config.Parse("isolation.yaml", []byte(yaml(100)))
	if err != nil {
		t.Fatal(err)
	}
	var dp *dataplane.Dataplane
	if err := tn.LB.Do(func() (err error) {
		dc := control.DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize, dc.ConnTableSize = 4096, 1024, 4096
		dp, err = dataplane.New(dc)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	c, err := control.New(cfg, control.Options{Publisher: dp, Stats: dp, Resolver: control.NewKernelResolverIn(tn.LB.NsHandle()),
		HealthNetns: health.InNetns(tn.LB.Path()), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := dp.Start(sctx); err != nil {
		t.Fatal(err)
	}
	failed := map[int]int{}
	for _, share := range []int{100, 50} {
		next, err := config.Parse("isolation.yaml", []byte(yaml(share)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Reload(next); err != nil {
			t.Fatal(err)
		}
		long := openLongLived(t, tn, 24)
		f, err := newSYNFlood(tn.Client.NS, "eth0", tn.Client.Ifaces[0].MAC, tn.LB.Ifaces[0].MAC, tn.VIP, 81, floodPool)
		if err != nil {
			t.Fatal(err)
		}
		f.start(uint64(time.Now().UnixNano()))
		time.Sleep(2 * time.Second) // the connections stay idle while the flood fills the table
		sent, err := f.stopFlood()
		if err != nil {
			t.Fatal(err)
		}
		// Another client's connection moves round robin on by one, so that a long-lived
		// flow the flood evicted is not rescheduled onto its old backend by the same
		// sequence of picks that placed it.
		extra := openLongLived(t, tn, 1)
		extra.close()
		for _, h := range long.conns {
			if _, err := h.Get(time.Second); err != nil {
				failed[share]++
			}
		}
		long.close()
		var over, evicted, entries uint64
		for _, ws := range dp.Stats() {
			over += ws.ConnOverQuota
			evicted += ws.ConnEvictions
			entries += ws.ConnEntries
		}
		t.Logf("table_share %d%%: %d entries, %d SYNs sent, %d evictions, %d over quota; %d of 24 idle long-lived connections failed afterwards",
			share, entries, sent, evicted, over, failed[share])
	}
	if failed[100] == 0 {
		t.Errorf("without a share the flood broke no connection: the test shows nothing")
	}
	// The connection opened after the flood to move round robin on is two new flows of the
	// other service, which has no share: in a full table each evicts the least recently
	// seen of its 16 ways, and after the flood that can be one of the idle long-lived
	// entries (the flood's own entries are younger). That is LRU, not the flood; the flood
	// itself, without a share, breaks all 24.
	if failed[50] > 1 {
		t.Errorf("with the flooded service at a 50%% share, %d long-lived connections of the other failed", failed[50])
	}
}
