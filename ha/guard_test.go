package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// guardNS makes one namespace with vip on its loopback, for the guard tests.
func guardNS(t *testing.T, vip netip.Addr) *lab.NS {
	t.Helper()
	testnet.Skip(t)
	ns, err := lab.NewNS(fmt.Sprintf("g%05x", time.Now().UnixNano()&0xfffff), "guard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := ns.AddAddr("lo", netip.PrefixFrom(vip, vip.BitLen())); err != nil {
		t.Fatal(err)
	}
	return ns
}

// dialErr connects to addr from inside ns and returns the error (nil: a
// listener answered).
func dialErr(ns *lab.NS, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

func TestGuardWithoutNftBinary(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.100")
	ns := guardNS(t, vip)
	t.Setenv("PATH", t.TempDir())
	if p, err := exec.LookPath("nft"); err == nil {
		t.Fatalf("nft still found at %s", p)
	}
	g := Guard{Table: "xlb_vrrp_9", NetNS: int(ns.NsHandle())}

	// Without the guard the kernel refuses (RST), which is what the guard is for.
	if err := dialErr(ns, "198.18.0.100:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial without guard: %v, want connection refused", err)
	}
	drops := []Drop{{vip, 0, 17}, {vip, 80, 6}, {netip.MustParseAddr("2001:2::100"), 443, 6}}
	if err := g.Apply(drops); err != nil {
		t.Fatalf("apply without nft on PATH: %v", err)
	}
	got, err := g.Drops()
	if err != nil || !slices.Equal(got, SortDrops(slices.Clone(drops))) {
		t.Fatalf("table reads back %v, %v; want %v", got, err, drops)
	}
	// The SYN is dropped: the dial times out instead of being refused.
	if err := dialErr(ns, "198.18.0.100:80"); !isTimeout(err) {
		t.Errorf("dial port 80 with guard: %v, want a timeout", err)
	}
	if err := dialErr(ns, "198.18.0.100:81"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial port 81 (not guarded): %v, want connection refused", err)
	}

	// Applying again replaces the rules in one transaction.
	if err := g.Apply(drops[1:2]); err != nil {
		t.Fatal(err)
	}
	if got, err := g.Drops(); err != nil || !slices.Equal(got, drops[1:2]) {
		t.Errorf("after narrowing: %v, %v", got, err)
	}

	if err := g.Remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got, err := g.Drops(); err != nil || got != nil {
		t.Errorf("after remove the table reads %v, %v; want none", got, err)
	}
	if err := dialErr(ns, "198.18.0.100:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after remove: %v, want connection refused", err)
	}
	if err := g.Remove(); err != nil {
		t.Errorf("removing an absent table: %v", err)
	}
	if err := g.Apply([]Drop{{}}); !errors.Is(err, ErrBadDrop) {
		t.Errorf("apply of a drop without VIP: %v, want ErrBadDrop", err)
	}
}

// isTimeout reports whether a dial ran out of time (the context's deadline
// or the socket deadline the dialer derives from it, whichever fired first).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// nftScript is the nft script the guard used to feed to `nft -f -`, kept
// as the reference the netlink rules must equal.
func nftScript(table string, drops []Drop) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n", table)
	for _, d := range drops {
		fam, proto := "ip", map[uint8]string{6: "tcp", 17: "udp"}[d.Proto]
		if d.VIP.Is6() {
			fam = "ip6"
		}
		fmt.Fprintf(&b, "\t\t%s daddr %s meta l4proto %s", fam, d.VIP, proto)
		if d.Port != 0 {
			fmt.Fprintf(&b, " th dport %d", d.Port)
		}
		b.WriteString(" drop\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// TestGuardEqualsNftScript checks, where the nft binary is installed, that
// nft lists the table made over netlink exactly as the one made by the nft
// script the guard replaced.
func TestGuardEqualsNftScript(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed (Debian package nftables): nothing to compare with")
	}
	vip := netip.MustParseAddr("198.18.0.100")
	drops := SortDrops([]Drop{{vip, 0, 17}, {vip, 80, 6}, {netip.MustParseAddr("2001:2::100"), 443, 6}})
	a, b := guardNS(t, vip), guardNS(t, vip)
	if err := (Guard{Table: "xlb_vrrp_9", NetNS: int(a.NsHandle())}).Apply(drops); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftScript("xlb_vrrp_9", drops))
	if out, err := runIn(b, cmd); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	la, err := a.Run("nft", "list", "table", "inet", "xlb_vrrp_9")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Run("nft", "list", "table", "inet", "xlb_vrrp_9")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nft lists both as:\n%s", la)
	if string(la) != string(lb) {
		t.Errorf("netlink table:\n%s\nnft script table:\n%s", la, lb)
	}
}

func runIn(ns *lab.NS, cmd *exec.Cmd) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return []byte(out.String()), err
}
