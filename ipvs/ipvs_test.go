package ipvs

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/sched"
)

// configBlocks returns every YAML block of a document, parsed.
func configBlocks(t *testing.T, path string) []*config.Config {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*config.Config
	for i, b := range strings.Split(string(doc), "```yaml\n")[1:] {
		end := strings.Index(b, "```")
		if end < 0 {
			t.Fatalf("block %d is not closed", i)
		}
		cfg, err := config.Parse(path, []byte(b[:end]))
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		out = append(out, cfg)
	}
	return out
}

// The export of every example configuration of docs/config.md is ipvsadm-restore input: one
// -A per service, one -a per enabled backend, each line accepted by the grammar.
func TestExportDocsConfigs(t *testing.T) {
	blocks := configBlocks(t, "../docs/config.md")
	if len(blocks) < 3 {
		t.Fatalf("%d blocks in docs/config.md", len(blocks))
	}
	// The real-NIC guide's DUT configuration, exported for LVS there.
	guide := configBlocks(t, "../docs/bench/real-nic.md")
	if len(guide) != 1 {
		t.Fatalf("%d blocks in docs/bench/real-nic.md, want 1", len(guide))
	}
	for i, cfg := range append(blocks, guide...) {
		e, err := FromConfig(cfg)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if err := Check(strings.NewReader(e.Text())); err != nil {
			t.Errorf("block %d: %v\n%s", i, err, e.Text())
		}
		var adds, reals int
		for _, s := range cfg.Services {
			adds++
			for _, b := range s.Backends {
				if !b.Disabled {
					reals++
				}
			}
		}
		if got := strings.Count(e.Text(), "-A "); got != adds {
			t.Errorf("block %d: %d services exported, config has %d", i, got, adds)
		}
		if got := strings.Count(e.Text(), "-a "); got != reals {
			t.Errorf("block %d: %d real servers exported, config has %d enabled", i, got, reals)
		}
		t.Logf("block %d:\n%s# %s", i, e.Text(), strings.Join(e.Notes, "\n# "))
	}
}

func TestExportMapping(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    method: dr
    scheduler: maglev
    backends: [{address: 198.18.0.11, weight: 300}, {address: 198.18.0.12, weight: 0}, {address: 198.18.0.13, disabled: true}]
    fallback: [{name: sorry, address: 198.18.0.20}]
  - name: dns
    vip: 198.18.0.101
    port: 53
    protocol: udp
    method: nat
    scheduler: source-hash
    backends: [{address: 198.18.1.11, port: 5353}]
  - name: all
    vip: 2001:2::100
    port: 0
    method: tunnel
    tunnel_source: 2001:2::2
    scheduler: least-conn
    backends: [{address: 2001:2::11}]
    health: {kind: icmp}
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `-A -t 198.18.0.100:80 -s mh -b mh-port
-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 300
-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 0
-A -u 198.18.0.101:53 -s sh
-a -u 198.18.0.101:53 -r 198.18.1.11:5353 -m -w 100
-A -f 1 -6 -s wlc
-a -f 1 -6 -r [2001:2::11]:0 -i -w 100
`
	if e.Text() != want {
		t.Errorf("export:\n%s\nwant:\n%s", e.Text(), want)
	}
	if err := Check(strings.NewReader(e.Text())); err != nil {
		t.Error(err)
	}
	notes := strings.Join(e.Notes, "\n")
	for _, w := range []string{"web: scheduler maglev as mh", "dns: scheduler source-hash as sh", "disabled: left out",
		"sorry", "firewall-mark service 1", "ip6 daddr 2001:2::100", "not from tunnel_source", "health checks"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes lack %q:\n%s", w, notes)
		}
	}
	for s := sched.Maglev; s <= sched.LeastLoad; s++ {
		if sc, _, _, err := Scheduler(s); err != nil || !contains(Schedulers, sc) {
			t.Errorf("scheduler %s -> %q, %v", s, sc, err)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Check refuses what ipvsadm refuses, naming the line.
func TestCheckRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"-A -t 198.18.0.1:80 -s maglev":                                         "scheduler \"maglev\"",
		"-A -t 198.18.0.1 -s rr":                                                "service address",
		"-A -t 198.18.0.1:0 -s rr":                                              "port 0",
		"-a -t 198.18.0.1:80 -r 198.18.0.2:80 -g":                               "no earlier line added",
		"-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -g":                     "line 2: -a needs a real server",
		"-A -t 198.18.0.1:80 -s rr -w 5":                                        "option -w does not go with -A",
		"-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r x -g":                "real server \"x\"",
		"-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.18.0.2 -g -m":    "two forwarding methods",
		"-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.18.0.2 -w 70000": "-w \"70000\"",
		"-A -t 198.18.0.1:80 -s mh -b mh-everything":                            "scheduler flag",
		"-A -f 0 -s rr":          "firewall mark",
		"-A -t 198.18.0.1:80 -6": "-6 before -f",
		"-A -t 198.18.0.1:80 -s rr\n-A -t 198.18.0.1:80 -s rr": "added twice",
		"ipvsadm -A -t 198.18.0.1:80":                          "unknown argument",
		"-t 198.18.0.1:80":                                     "no command",
		"-A -a -t 198.18.0.1:80":                               "two commands",
		"-A -t 198.18.0.1:80 -s":                               "-s needs a value",
	} {
		err := Check(strings.NewReader(in))
		if !errors.Is(err, ErrGrammar) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	ok := "# saved\n\n--add-service --tcp-service [2001:2::1]:443 --scheduler wlc --persistent 300\n" +
		"-a -t [2001:2::1]:443 -r [2001:2::11]:443 -i -w 1 -x 100 -y 10\n-A -f 7 -s rr -p # persistent\n-C\n"
	if err := Check(strings.NewReader(ok)); err != nil {
		t.Errorf("valid input refused: %v", err)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("-A -t 198.18.0.1:80 -s mh -b mh-port\n-a -t 198.18.0.1:80 -r 198.18.0.2:80 -g -w 1\n")
	f.Add("-A -f 1 -6 -s wlc -p 30\n-a -f 1 -6 -r [2001:2::11]:0 -i\n-C\n")
	f.Add("--add-service --udp-service [::1]:53 -M 64")
	f.Fuzz(func(t *testing.T, in string) {
		err := Check(strings.NewReader(in))
		if err != nil && !errors.Is(err, ErrGrammar) {
			t.Fatalf("error %v does not wrap ErrGrammar", err)
		}
	})
}

// TestExportIPVSServices: persistence becomes -p/-M, one_packet -o, a group a firewall-mark
// service (with the nft rule in a note), slow_start a note; the grammar accepts the lines.
func TestExportIPVSServices(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vips: [198.18.0.100, 198.18.0.101]
    ports: [80, 8000-8099]
    slow_start: 10s
    persistence: {timeout: 120s, prefix: 24}
    backends: [{address: 198.18.0.11}]
  - name: dns
    vip: 2001:2::53
    port: 53
    protocol: udp
    one_packet: true
    persistence: {}
    backends: [{address: 2001:2::11}]
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text, notes := e.Text(), strings.Join(e.Notes, "\n")
	for _, want := range []string{"-A -f 1 -s mh -b mh-port -p 120 -M 255.255.255.0", "-a -f 1 -r 198.18.0.11:0 -g",
		"-A -u [2001:2::53]:53 -s mh -b mh-port -p 300 -M 64 -o"} {
		if !strings.Contains(text, want) {
			t.Errorf("export lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"daddr { 198.18.0.100, 198.18.0.101 } tcp dport { 80, 8000-8099 } meta mark set 1", "slow_start 10s"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if err := Check(strings.NewReader(text)); err != nil {
		t.Errorf("%v\n%s", err, text)
	}
}
