package control

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/ha"
)

// The crash guard: while a master holds the VIPs on its interface, the
// kernel would answer every VIP packet its data path does not steer with a
// reset (TCP) or port unreachable (UDP). That never happens while xlb runs
// (the XDP program steers the services' packets), but when the xlb process
// dies (a crash, SIGKILL) the VIPs stay on the interface, and until the
// backup's gratuitous ARP moves the clients (3 * interval + skew) their
// new connections would be refused and their established ones reset. The
// guard is an nftables table in the host's network namespace (ha.Guard,
// written over netlink: no nft binary) that drops the services' packets to
// the VIPs in the input hook instead: the clients retransmit, and the retransmissions reach the new master. It follows the
// controller's snapshots (reloads included), stays in the kernel when the
// process dies (that is the point) and is removed on a clean exit.

// guardDrops lists the services of snap whose VIP is one of vips, sorted.
func guardDrops(snap *dataplane.Snapshot, vips []netip.Addr) []ha.Drop {
	var drops []ha.Drop
	for i := range snap.NumServices() {
		sp := snap.Service(i)
		drops = appendGuardDrops(drops, &sp, vips)
	}
	return ha.SortDrops(drops)
}

// guardTable is the nftables table of virtual router vrid.
func guardTable(vrid uint8) string { return fmt.Sprintf("xlb_vrrp_%d", vrid) }

// crashGuard keeps the guard of one virtual router in line with the
// published snapshots. Its methods are called with the Standby's lock held.
type crashGuard struct {
	vrid  uint8
	vips  []netip.Addr
	apply func(drops []ha.Drop) error // ha.Guard.Apply; nil or empty drops: remove
	log   *slog.Logger
	last  []ha.Drop // the drops in place
	valid bool      // last is in place (false: unknown, apply on the next snapshot)
}

// newCrashGuard returns the guard of virtual router vrid over netlink.
func newCrashGuard(vrid uint8, vips []netip.Addr, log *slog.Logger) *crashGuard {
	g := ha.Guard{Table: guardTable(vrid)}
	return &crashGuard{vrid: vrid, vips: slices.Clone(vips), apply: g.Apply, log: log}
}

// update applies the guard for snap's services if they changed. A failure
// is logged and retried on the next snapshot.
func (g *crashGuard) update(snap *dataplane.Snapshot) {
	d := guardDrops(snap, g.vips)
	if g.valid && slices.Equal(d, g.last) {
		return
	}
	if err := g.apply(d); err != nil {
		g.valid = false
		g.log.Warn("vrrp: crash guard not in place: if xlb dies as master, its kernel resets the VIPs' "+
			"connections until the backup takes over", "table", "inet "+guardTable(g.vrid), "err", err)
		return
	}
	g.last, g.valid = d, true
}

// remove deletes the guard (on a clean exit).
func (g *crashGuard) remove() error {
	g.last, g.valid = nil, false
	return g.apply(nil)
}
