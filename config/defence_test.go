package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefenceConfig: acl (inline and files, 10,000 entries), limits and the api's
// socket and TLS settings parse into what the data path and API need.
func TestDefenceConfig(t *testing.T) {
	dir := t.TempDir()
	var deny strings.Builder
	deny.WriteString("# blocked networks\n")
	for i := range 10000 {
		fmt.Fprintf(&deny, "10.%d.%d.0/24\n", i>>8, i&255)
	}
	deny.WriteString("2001:db8:bad::/48 # v6\n")
	denyFile := filepath.Join(dir, "deny.txt")
	if err := os.WriteFile(denyFile, []byte(deny.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	y := base + `    acl:
      allow: [198.18.0.0/15, 2001:2::/48]
      deny: [198.18.5.0/24]
      deny_file: ` + denyFile + `
    limits:
      new_flows: {rate: 1000}
      source_new_flows: {rate: 10, burst: 20, ipv4_prefix: 16}
api:
  socket: /run/xlb-test/xlb.sock
  socket_group: "65534"
`
	cfg, err := Parse("d.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	allow, denyList := s.ACL.Lists()
	if len(allow) != 2 || len(denyList) != 10002 || denyList[0] != netip.MustParsePrefix("198.18.5.0/24") ||
		denyList[10001] != netip.MustParsePrefix("2001:db8:bad::/48") || denyList[10000] != netip.MustParsePrefix("10.39.15.0/24") {
		t.Errorf("acl lists: %d allow, %d deny, last %v", len(allow), len(denyList), denyList[len(denyList)-1])
	}
	if r := s.Limits.NewFlows; r == nil || r.Rate != 1000 || r.Burst != 1000 {
		t.Errorf("new_flows %+v, want rate 1000 burst 1000 (default)", r)
	}
	if r := s.Limits.SourceNewFlows; r == nil || r.Burst != 20 || r.IPv4Prefix != 16 || r.IPv6Prefix != DefaultSourceIPv6Prefix {
		t.Errorf("source_new_flows %+v", r)
	}
	if cfg.API.SocketPath() != "/run/xlb-test/xlb.sock" || cfg.API.SocketGroup != "65534" {
		t.Errorf("api %+v", cfg.API)
	}
	d, err := Parse("d.yaml", []byte(base))
	if err != nil || d.API.SocketPath() != DefaultAPISocket {
		t.Errorf("default socket %q (%v)", d.API.SocketPath(), err)
	}
	// table_share: 100 for a lone service, DefaultTableShare for several, as written.
	two := base + "  - name: other\n    vip: 198.19.0.11\n    port: 80\n    table_share: 30\n    backends: [{address: 198.18.0.12}]\n"
	if ts, err := Parse("d.yaml", []byte(two)); err != nil || ts.Services[0].TableShare != DefaultTableShare || ts.Services[1].TableShare != 30 || d.Services[0].TableShare != 100 {
		t.Errorf("table_share defaults: %v", err)
	}
	n, err := Parse("d.yaml", []byte(base+"api: {socket: none}\n"))
	if err != nil || n.API.SocketPath() != "" {
		t.Errorf("socket none: %q (%v)", n.API.SocketPath(), err)
	}
}

// TestDefenceConfigErrors: every new setting refuses bad input with the file, line and
// reason (a list file's own name and line for its entries).
func TestDefenceConfigErrors(t *testing.T) {
	dir := t.TempDir()
	listFile := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(listFile, []byte("10.0.0.0/8\n\n# ok so far\n10.1.2.3/8\n198.18.5.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.txt")
	var bb strings.Builder
	for i := range MaxACLEntries + 1 {
		fmt.Fprintf(&bb, "%d.%d.%d.0/24\n", 10+i>>16, (i>>8)&255, i&255)
	}
	if err := os.WriteFile(big, []byte(bb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acl := func(body string) string { return base + "    acl:\n" + body }
	limits := func(body string) string { return base + "    limits:\n" + body }
	tests := []struct {
		name   string
		yaml   string
		file   string // "" = d.yaml
		line   int
		reason error
		text   string
	}{
		{"acl not a mapping", base + "    acl: [1.2.3.4]\n", "", 9, ErrType, "mapping"},
		{"acl unknown field", acl("      permit: [1.2.3.4]\n"), "", 10, ErrUnknownField, "permit"},
		{"acl bad prefix", acl("      deny: [198.18.0.0/33]\n"), "", 10, ErrValue, "not an IP prefix"},
		{"acl host bits", acl("      allow:\n        - 198.18.0.0/15\n        - 198.18.7.1/24\n"), "", 12, ErrValue, "host bits"},
		{"acl allow and deny", acl("      allow:\n        - 198.18.0.0/15\n      deny:\n        - 10.0.0.0/8\n        - 198.18.0.0/15\n"), "", 14, ErrDuplicate, "allow[0] (line 11)"},
		{"acl mapped duplicate", acl("      deny: [198.18.0.0/16, '::ffff:198.18.0.0/112']\n"), "", 10, ErrDuplicate, "198.18.0.0/16"},
		{"acl file missing", acl("      deny_file: " + filepath.Join(dir, "nothing.txt") + "\n"), "", 10, ErrValue, "no such file"},
		{"acl file bad line", acl("      deny_file: " + listFile + "\n"), listFile, 4, ErrValue, "host bits"},
		{"acl file duplicate of inline", acl("      allow: [198.18.5.0/24]\n      deny_file: " + listFile + "\n"), listFile, 5, ErrDuplicate, "allow[0]"},
		{"acl too big", acl("      deny_file: " + big + "\n"), "", 10, ErrTooBig, "at most 65536"},
		{"limits on udp", strings.Replace(limits("      new_flows: {rate: 5}\n"), "    port: 80\n", "    port: 80\n    protocol: udp\n", 1), "", 11, ErrValue, "TCP SYNs"},
		{"limits rate zero", limits("      new_flows: {rate: 0}\n"), "", 10, ErrValue, "at least 1"},
		{"limits rate missing", limits("      new_flows: {burst: 5}\n"), "", 10, ErrValue, "at least 1"},
		{"limits rate negative", limits("      new_flows: {rate: -5}\n"), "", 10, ErrValue, "integer"},
		{"limits unknown field", limits("      new_flow: {rate: 5}\n"), "", 10, ErrUnknownField, "new_flow"},
		{"limits prefix on service rate", limits("      new_flows: {rate: 5, ipv4_prefix: 24}\n"), "", 10, ErrValue, "source_new_flows"},
		{"limits ipv4 prefix", limits("      source_new_flows:\n        rate: 5\n        ipv4_prefix: 33\n"), "", 12, ErrValue, "1..32"},
		{"limits ipv6 prefix", limits("      source_new_flows:\n        rate: 5\n        ipv6_prefix: 129\n"), "", 12, ErrValue, "1..128"},
		{"lower threshold without upper", base + "      - {address: 198.18.0.12, lower_threshold: 5}\n", "", 9, ErrValue, "without upper_threshold"},
		{"lower threshold not below upper", base + "      - {address: 198.18.0.12, upper_threshold: 5, lower_threshold: 5}\n", "", 9, ErrValue, "below upper_threshold"},
		{"threshold negative", base + "      - {address: 198.18.0.12, upper_threshold: -1}\n", "", 9, ErrValue, "integer"},
		{"table share zero", strings.Replace(base, "    port: 80\n", "    port: 80\n    table_share: 0\n", 1), "", 7, ErrValue, "not in 1..100"},
		{"table share over 100", strings.Replace(base, "    port: 80\n", "    port: 80\n    table_share: 101\n", 1), "", 7, ErrValue, "not in 1..100"},
		{"socket relative", base + "api:\n  socket: xlb.sock\n", "", 10, ErrValue, "absolute"},
		{"socket group unknown", base + "api:\n  socket_group: no-such-group-xlb\n", "", 10, ErrValue, "no-such-group-xlb"},
		{"socket group without socket", base + "api:\n  socket: none\n  socket_group: '0'\n", "", 11, ErrValue, "without a socket"},
		{"tls cert without key", base + "api:\n  tls_cert: " + junk + "\n", "", 10, ErrMissing, "go together"},
		{"tls key without cert", base + "api:\n  tls_key: " + junk + "\n", "", 10, ErrMissing, "go together"},
		{"tls cert unreadable", base + "api:\n  tls_cert: " + junk + "\n  tls_key: " + junk + "\n", "", 10, ErrValue, "certificate"},
		{"client ca without tls", base + "api:\n  client_ca: " + junk + "\n", "", 10, ErrMissing, "needs tls_cert"},
		{"client ca not pem", base + "api:\n  client_ca: " + junk + "\n", "", 10, ErrValue, "no PEM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("d.yaml", []byte(tc.yaml))
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want ConfigErrors", err)
			}
			file := tc.file
			if file == "" {
				file = "d.yaml"
			}
			for _, fe := range ce {
				if fe.File == file && fe.Line == tc.line && errors.Is(fe, tc.reason) && strings.Contains(fe.Error(), tc.text) {
					return
				}
			}
			t.Errorf("no error at %s:%d %v containing %q in:\n%v", file, tc.line, tc.reason, tc.text, err)
		})
	}
}

// FuzzPrefixList: a list file never panics; every entry it returns is a valid prefix
// without host bits, found on a line the parser did not also refuse.
func FuzzPrefixList(f *testing.F) {
	f.Add([]byte("10.0.0.0/8\n# c\n198.18.0.1\n2001:db8::/32 # x\n"))
	f.Add([]byte("10.1.2.3/8\n::ffff:1.2.3.0/120\n\n\t fe80::1%eth0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := &errs{file: "d.yaml"}
		lines := map[int]bool{}
		list, err := parsePrefixList(e, "list", "acl.deny_file", data, func(pf netip.Prefix, line int) { lines[line] = true })
		if err != nil {
			return // a line beyond the scanner's limit
		}
		if len(list) != len(lines) {
			t.Fatalf("%d entries from %d lines", len(list), len(lines))
		}
		for _, pf := range list {
			if !pf.IsValid() || pf.Masked() != pf {
				t.Fatalf("entry %v", pf)
			}
		}
		for _, fe := range e.list {
			if fe.File != "list" || fe.Line < 1 || lines[fe.Line] {
				t.Fatalf("error %v (line also accepted: %v)", fe, lines[fe.Line])
			}
		}
	})
}
