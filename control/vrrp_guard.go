package control

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/xlb-dev/xlb/dataplane"
)

// The crash guard: while a master holds the VIPs on its interface, the
// kernel would answer every VIP packet its data path does not steer with a
// reset (TCP) or port unreachable (UDP). That never happens while xlb runs
// (the XDP program steers the services' packets), but when the xlb process
// dies (a crash, SIGKILL) the VIPs stay on the interface, and until the
// backup's gratuitous ARP moves the clients (3 * interval + skew) their
// new connections would be refused and their established ones reset. The
// guard is an nftables table in the host's network namespace that drops the
// services' packets to the VIPs in the input hook instead: the clients
// retransmit, and the retransmissions reach the new master. It follows the
// controller's snapshots (reloads included), stays in the kernel when the
// process dies (that is the point) and is removed on a clean exit.

// guardKey is one service the guard covers.
type guardKey struct {
	vip   netip.Addr
	port  uint16 // 0: every port
	proto uint8  // IP protocol number
}

// guardKeys lists the services of snap whose VIP is one of vips.
func guardKeys(snap *dataplane.Snapshot, vips []netip.Addr) []guardKey {
	var keys []guardKey
	for i := range snap.NumServices() {
		sp := snap.Service(i)
		if slices.Contains(vips, sp.VIP) {
			keys = append(keys, guardKey{sp.VIP, sp.Port, sp.Proto})
		}
	}
	slices.SortFunc(keys, func(a, b guardKey) int {
		return cmp.Or(a.vip.Compare(b.vip), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
	})
	return slices.Compact(keys)
}

// guardTable is the nftables table of virtual router vrid.
func guardTable(vrid uint8) string { return fmt.Sprintf("xlb_vrrp_%d", vrid) }

// guardRemoval deletes the table whether or not it exists (declaring it
// first makes the delete succeed either way).
func guardRemoval(vrid uint8) string {
	t := guardTable(vrid)
	return fmt.Sprintf("table inet %s {}\ndelete table inet %s\n", t, t)
}

// guardScript returns the nft script that (re)creates the guard for keys,
// or removes it when there are none.
func guardScript(vrid uint8, keys []guardKey) string {
	if len(keys) == 0 {
		return guardRemoval(vrid)
	}
	var b strings.Builder
	b.WriteString(guardRemoval(vrid))
	fmt.Fprintf(&b, "table inet %s {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n",
		guardTable(vrid))
	for _, k := range keys {
		fam := "ip"
		if k.vip.Is6() {
			fam = "ip6"
		}
		proto := fmt.Sprint(k.proto)
		switch k.proto {
		case 6:
			proto = "tcp"
		case 17:
			proto = "udp"
		}
		fmt.Fprintf(&b, "\t\t%s daddr %s meta l4proto %s", fam, k.vip, proto)
		if k.port != 0 {
			fmt.Fprintf(&b, " th dport %d", k.port)
		}
		b.WriteString(" drop\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// nft runs the nft command with script on its standard input.
func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// crashGuard keeps the guard of one virtual router in line with the
// published snapshots. Its methods are called with the Standby's lock held.
type crashGuard struct {
	vrid  uint8
	vips  []netip.Addr
	apply func(script string) error // nft
	log   *slog.Logger
	last  string // the script in place
}

// update applies the guard for snap's services if they changed. A failure
// is logged and retried on the next snapshot.
func (g *crashGuard) update(snap *dataplane.Snapshot) {
	s := guardScript(g.vrid, guardKeys(snap, g.vips))
	if s == g.last {
		return
	}
	if err := g.apply(s); err != nil {
		g.log.Warn("vrrp: crash guard not in place: if xlb dies as master, its kernel resets the VIPs' "+
			"connections until the backup takes over", "err", err)
		return
	}
	g.last = s
}

// remove deletes the guard (on a clean exit).
func (g *crashGuard) remove() error {
	g.last = ""
	return g.apply(guardRemoval(g.vrid))
}
