package control

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
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
// retransmit, and the retransmissions reach the new master. It stays in
// the kernel when the process dies (that is the point) and is removed on a
// clean exit.

// guardTable is the nftables table of virtual router vrid.
func guardTable(vrid uint8) string { return fmt.Sprintf("xlb_vrrp_%d", vrid) }

// guardScript returns the nft script that (re)creates the guard for the
// services of cfg whose VIP the vrrp section holds; "" when there is none.
func guardScript(cfg *Config) string {
	v := cfg.VRRP
	if v == nil {
		return ""
	}
	var rules []string
	for _, s := range cfg.Services {
		if !slices.Contains(v.VIPs, s.VIP) {
			continue
		}
		fam := "ip"
		if s.VIP.Is6() {
			fam = "ip6"
		}
		proto := s.Protocol
		if proto == "" {
			proto = DefaultProtocol
		}
		r := fmt.Sprintf("%s daddr %s meta l4proto %s", fam, s.VIP, proto)
		if s.Port != 0 {
			r += fmt.Sprintf(" %s dport %d", proto, s.Port)
		}
		rules = append(rules, "\t\t"+r+" drop\n")
	}
	if len(rules) == 0 {
		return ""
	}
	slices.Sort(rules)
	rules = slices.Compact(rules)
	t := guardTable(v.VirtualRouterID)
	var b strings.Builder
	// Declaring the table first makes the delete succeed whether or not a
	// previous run left one behind.
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", t, t)
	fmt.Fprintf(&b, "table inet %s {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n", t)
	b.WriteString(strings.Join(rules, ""))
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

// installGuard puts the crash guard in place (see above).
func installGuard(cfg *Config) error {
	s := guardScript(cfg)
	if s == "" {
		return nil
	}
	return nft(s)
}

// removeGuard deletes the crash guard of virtual router vrid, if any.
func removeGuard(vrid uint8) error {
	t := guardTable(vrid)
	return nft(fmt.Sprintf("table inet %s {}\ndelete table inet %s\n", t, t))
}
