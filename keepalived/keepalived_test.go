package keepalived

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
)

// validate parses and validates a translation with xlb's own configuration loader: what
// `xlb run --check` does with the file.
func validate(t *testing.T, name string, y []byte) {
	t.Helper()
	if _, err := config.Parse(name, y); err != nil {
		t.Fatalf("%s: the translation is not a valid xlb configuration:\n%v\n%s", name, err, y)
	}
}

// importCase is what a testdata file's translation must contain.
type importCase struct {
	yaml  []string // substrings of the YAML
	notes []string // substrings of some note each ("file:line: keyword: ...")
	not   []string // substrings the YAML must not have
}

var importCases = map[string]importCase{
	"01-web-dr.conf": {
		yaml: []string{"method: dr", "scheduler: least-conn", "weight: 3", "kind: http", "path: /healthz",
			"expect_status: 200", "interval: 6s", "timeout: 3s", "fall: 4", "virtual_router_id: 51", "priority: 150",
			"- 198.18.0.100\n", "interfaces:\n  - name: eth0"},
		notes: []string{"01-web-dr.conf:38: digest: not translated", "01-web-dr.conf:18: authentication: not translated",
			"01-web-dr.conf:3: notification_email: not translated", "01-web-dr.conf:23: 198.18.0.100/24: approximated"},
	},
	"02-nat-tcp.conf": {
		yaml: []string{"method: nat", "scheduler: rr", "port: 8080", "weight: 0", "fallback:\n      - address: 198.19.1.99",
			"kind: none", "kind: tcp", "fall: 3", "timeout: 2s", "persistence:\n      timeout: 300s\n"},
		notes: []string{"02-nat-tcp.conf:12: sorry_server: approximated",
			"02-nat-tcp.conf: interfaces: approximated"},
	},
	"03-ssl-tun.conf": {
		yaml: []string{"method: tunnel", "tunnel_source: 198.18.0.110", "scheduler: source-hash", "checks:", "kind: https",
			"path: /api/ping", "expect_status: 204", "host: www.example.com", "insecure_skip_verify: true"},
		notes: []string{"03-ssl-tun.conf:2: virtual_server: approximated: lb_kind TUN"},
	},
	"04-misc.conf": {
		yaml: []string{"kind: exec", "- /usr/local/bin/check_pg_replica\n", "dynamic_weight: true", "user: nobody",
			"user: daemon", "- /bin/sh\n", "| grep -q streaming", "timeout: 2s"},
	},
	"05-dns-smtp.conf": {
		yaml: []string{"protocol: udp", "kind: dns", "query: www.example.com", "query_type: A", "kind: smtp",
			"helo: lb.example.com", "name: tcp-198.18.0.53-53", "name: udp-198.18.0.53-53", "one_packet: true"},
		notes: []string{"05-dns-smtp.conf:65: host: not translated"},
	},
	"06-groups.conf": {
		yaml:  []string{"vip: 198.18.0.130", "vip: 198.18.0.131", "vip: 198.18.0.132", "vip: 198.18.0.133", "port: 8080"},
		notes: []string{"06-groups.conf:6: fwmark: not translated", "06-groups.conf:14: quorum: not translated", "06-groups.conf:33: virtual_server: not translated"},
		not:   []string{"198.18.0.134"},
	},
	"07-include.conf": {
		yaml: []string{"name: eth1", "vip: 198.18.0.140", "vip: 198.18.0.141", "kind: http", "kind: tcp", "virtual_router_id: 61"},
	},
	"08-sync-group.conf": {
		yaml: []string{"name: eth0", "name: eth1", "vrrp_instances:", "name: VI_OUT", "virtual_router_id: 71", "name: VI_IN",
			"virtual_router_id: 72", "vrrp_sync_groups:\n  - name: VG_1\n    instances:\n      - VI_OUT\n      - VI_IN",
			"track_scripts:\n      - name: chk_haproxy\n      - name: chk_disk", "weight: -10", "weight: -20",
			"any:\n        - /etc/keepalived/notify-any.sh", "- /usr/bin/pgrep", "interval: 10s"},
		not: []string{"not translated yet"},
	},
	"09-ipv6.conf": {
		yaml: []string{"vip: 2001:2::100", "address: 2001:2::12", "advert_interval: 500ms", "- 2001:2::100\n"},
	},
	"10-mixed-checks.conf": {
		yaml: []string{"checks:", "expect_body: ready", "port: 9100", "kind: exec", "- /usr/lib/nagios/plugins/check_load",
			"kind: icmp", "fall: 4", "timeout: 1s"},
		notes: []string{"10-mixed-checks.conf:27: inhibit_on_failure: not translated", "10-mixed-checks.conf:35: status_code: approximated",
			"10-mixed-checks.conf:5: lb_algo: approximated: lblc -> source-hash"},
	},
	"11-unicast.conf": {
		yaml: []string{"name: ens5", "preempt: false", "preempt_delay: 30s", "source_address: 198.18.0.2", "- 198.18.0.4\n",
			"advert_interval: 300ms", "garp_repeat: 3", "timeout: 500ms", "weight: 100"},
		notes: []string{"11-unicast.conf:20: lb_algo: approximated: fo -> wrr"},
	},
	"13-params.conf": {
		yaml: []string{"vip: 198.18.0.190", "port: 8443", "address: 198.18.0.191", "address: 198.18.0.192", "kind: tcp",
			"timeout: 2s", "- 198.18.0.190\n", "/usr/local/bin/notify.sh 198.18.0.190 $$"},
		notes: []string{`13-params.conf:26: real_server: not translated: "$UNDEFINED" is not a port`},
		not:   []string{"$VIP", "${PORT}", "198.18.0.193"},
	},
	"12-quoted-odd.conf": {
		yaml:  []string{"vip: 198.18.0.180", "port: 443", "scheduler: least-conn", "weight: 5", "kind: https"},
		notes: []string{"12-quoted-odd.conf:18: frobnicate: not translated: unknown", "12-quoted-odd.conf:20: virtual_server: not translated", "12-quoted-odd.conf:16: uthreshold"},
		not:   []string{"198.18.0.181"},
	},
}

// TestImportTestdata translates every testdata/*.conf: each must give a valid xlb
// configuration with the expected content and notes, and every note names its file:line.
func TestImportTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.conf")
	if err != nil || len(files) < 10 {
		t.Fatalf("%d testdata files (%v), want at least 10", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			res, err := ImportFile(f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			validate(t, f, res.YAML)
			tc, ok := importCases[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expectations for %s", f)
			}
			y := string(res.YAML)
			for _, s := range tc.yaml {
				if !strings.Contains(y, s) {
					t.Errorf("YAML lacks %q:\n%s", s, y)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(y, s) {
					t.Errorf("YAML has %q:\n%s", s, y)
				}
			}
			var all []string
			for _, n := range res.Notes {
				all = append(all, n.String())
				if n.Pos.File == "" || (n.Pos.Line == 0 && n.Keyword != "interfaces") {
					t.Errorf("note without a position: %v", n)
				}
			}
			joined := strings.Join(all, "\n")
			for _, s := range tc.notes {
				if !strings.Contains(joined, s) {
					t.Errorf("no note %q among:\n%s", s, joined)
				}
			}
		})
	}
}

// TestSyntaxErrors: a grammar error gives file:line and no translation.
func TestSyntaxErrors(t *testing.T) {
	for file, want := range map[string]string{
		"unbalanced.conf":  "testdata/bad/unbalanced.conf:1: missing }: the block of virtual_server",
		"extra-brace.conf": "testdata/bad/extra-brace.conf:4: unexpected }",
		"quote.conf":       "testdata/bad/quote.conf:2: unterminated quoted string",
		"brace-only.conf":  "testdata/bad/brace-only.conf:1: { without a keyword",
		"loop.conf":        "testdata/bad/loop.conf:1: include \"loop.conf\": testdata/bad/loop.conf includes itself",
	} {
		res, err := ImportFile("testdata/bad/"+file, Options{})
		var se *SyntaxError
		if res != nil || !errors.As(err, &se) || !errors.Is(err, ErrSyntax) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v (result %v), want %q", file, err, res != nil, want)
		}
	}
	// A missing include file is no error (an empty conf.d), a missing main file is.
	if _, err := ImportFile("testdata/bad/no-such.conf", Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParamsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("$A=xx\n")
	for i := range 40 { // each doubles the last: 2^40 bytes if unbounded
		fmt.Fprintf(&b, "$A%d=$A$A\n$A=$A%d\n", i, i)
	}
	b.WriteString("router_id $A\n")
	_, err := Parse("bomb.conf", []byte(b.String()))
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "expands beyond") {
		t.Fatalf("%v, want a bounded-expansion syntax error", err)
	}
	// Many references to a long parameter on one line are bounded too.
	long := "$L=" + strings.Repeat("x", 60000) + "\nrouter_id" + strings.Repeat(" $L", 100) + "\n"
	if _, err := Parse("long.conf", []byte(long)); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("%v, want a line-length syntax error", err)
	}
	nodes, err := Parse("ok.conf", []byte("$A=x\n$B=${A}y\nkw $B ${B} $C\n"))
	if err != nil || len(nodes) != 1 || strings.Join(nodes[0].Args, " ") != "xy xy $C" {
		t.Fatalf("expansion: %v %+v", err, nodes)
	}
}

func TestNotUTF8(t *testing.T) {
	_, err := Parse("bin.conf", []byte("global_defs {\n  router_id \xff\xfe\n}\n"))
	if !errors.Is(err, ErrSyntax) || !strings.HasPrefix(err.Error(), "bin.conf:2: not valid UTF-8") {
		t.Fatalf("%v", err)
	}
}

func TestLex(t *testing.T) {
	nodes, err := Parse("x.conf", []byte("a \"b c\" d{e}#x\n! comment\nf \"g\\\"h\" 'i' # tail\n\nj\n{\n k\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("%d statements, want 3: %+v", len(nodes), nodes)
	}
	a := nodes[0]
	if a.Name != "a" || strings.Join(a.Args, "|") != "b c|d" || !a.Block || len(a.Children) != 1 || a.Children[0].Name != "e" {
		t.Errorf("a: %+v", a)
	}
	f := nodes[1]
	if f.Name != "f" || strings.Join(f.Args, "|") != `g"h|'i'` || f.Pos.Line != 3 {
		t.Errorf("f: %+v", f)
	}
	j := nodes[2]
	if j.Name != "j" || !j.Block || len(j.Children) != 1 || j.Children[0].Pos.Line != 7 {
		t.Errorf("j: %+v", j)
	}
}

// TestImportPersistence: persistence_timeout and persistence_granularity become a
// persistence block (the scheduler stays), ops one_packet on UDP; what cannot be is said.
func TestImportPersistence(t *testing.T) {
	conf := `virtual_server 198.18.0.100 80 {
    lb_algo wlc
    lb_kind DR
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    real_server 198.18.0.11 80 { TCP_CHECK { connect_timeout 2 } }
}
virtual_server 198.18.0.100 443 {
    lb_kind DR
    persistence_granularity 255.0.255.0
    persistence_timeout 60
    ops
    real_server 198.18.0.11 443 { TCP_CHECK { connect_timeout 2 } }
}
`
	nodes, err := Parse("k.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(nodes, Options{Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	y := string(res.YAML)
	var nb strings.Builder
	for _, n := range res.Notes {
		fmt.Fprintln(&nb, n.String())
	}
	notes := nb.String()
	for _, want := range []string{"scheduler: least-conn", "persistence:\n      timeout: 600s\n      prefix: 24\n", "timeout: 60s\n"} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
	if strings.Contains(y, "one_packet") {
		t.Errorf("ops on a TCP service became one_packet:\n%s", y)
	}
	for _, want := range []string{"k.conf:10: persistence_granularity: not translated", "k.conf:12: ops: not translated"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if _, err := config.Parse("out.yaml", res.YAML); err != nil {
		t.Errorf("the translation does not parse: %v\n%s", err, y)
	}
	for in, want := range map[string]int{"255.255.255.255": 32, "255.255.0.0": 16, "64": 64, "255.0.255.0": 0, "0.0.0.0": 0, "129": 0, "x": 0} {
		if got, ok := netmaskBits(in); got != want || ok != (want > 0) {
			t.Errorf("netmaskBits(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}
