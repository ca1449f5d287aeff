package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/sched"
)

const syncKey = "00112233445566778899aabbccddeeff"

const syncGood = base + `sync:
  listen: 198.18.0.2
  peers: [198.18.0.3, "198.18.0.4:9000"]
  key: ` + syncKey + `
  interval: 5ms
`

func TestSyncSection(t *testing.T) {
	cfg, err := Parse("s.yaml", []byte(syncGood))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sync
	if s == nil || s.Interval != 5*time.Millisecond || s.Capacity != connsync.DefaultCapacity ||
		s.Refresh != connsync.DefaultRefresh || s.MaxMessage != connsync.DefaultMaxMessage {
		t.Fatalf("sync section %+v", s)
	}
	nc, err := s.NodeConfig(sched.Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	if nc.Listen != netip.MustParseAddrPort("198.18.0.2:9442") || len(nc.Peers) != 2 ||
		nc.Peers[1] != netip.MustParseAddrPort("198.18.0.4:9000") || len(nc.Key) != 16 {
		t.Fatalf("node config %+v", nc)
	}
	if _, err := connsync.New(nc); err != nil {
		t.Fatal(err)
	}
	mc, err := Parse("m.yaml", []byte(base+"sync:\n  listen: 198.18.0.2\n  group: 239.255.0.42\n  interface: eth0\n  key: "+syncKey+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := mc.Sync.NodeConfig(sched.Timeouts{}); err != nil || nc.Group != netip.MustParseAddr("239.255.0.42") || nc.Interface != "eth0" || len(nc.Peers) != 0 {
		t.Fatalf("multicast node config %+v, %v", nc, err)
	} else if _, err := connsync.New(nc); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(keyFile, []byte(syncKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFile, err := Parse("s.yaml", []byte(strings.Replace(syncGood, "key: "+syncKey, "key_file: "+keyFile, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := withFile.Sync.LoadKey(); err != nil || len(k) != 16 {
		t.Fatalf("key_file: %x %v", k, err)
	}
	if !cfg.Sync.Equal(cfg.Sync) || cfg.Sync.Equal(withFile.Sync) || cfg.Sync.Equal(nil) {
		t.Error("Equal")
	}
}

func TestSyncSectionErrors(t *testing.T) {
	// base has 8 lines; "sync:" is line 9, its fields follow.
	good := "  listen: 198.18.0.2\n  peers: [198.18.0.3]\n  key: " + syncKey + "\n"
	cases := []struct {
		name, section, want string
		reason              error
	}{
		{"no listen", "  peers: [198.18.0.3]\n  key: " + syncKey + "\n",
			"s.yaml:10: sync.listen: missing", ErrMissing},
		{"bad listen", "  listen: nowhere\n  peers: [198.18.0.3]\n  key: " + syncKey + "\n",
			"s.yaml:10: sync.listen: bad value: \"nowhere\" is not an address", ErrValue},
		{"no peers", "  listen: 198.18.0.2\n  key: " + syncKey + "\n",
			"s.yaml:10: sync.peers: missing", ErrMissing},
		{"peer is self", "  listen: 198.18.0.2\n  peers: [198.18.0.2]\n  key: " + syncKey + "\n",
			"s.yaml:11: sync.peers[0]: bad value: 198.18.0.2 is this host's own", ErrValue},
		{"duplicate peer", "  listen: 198.18.0.2\n  peers: [198.18.0.3, '198.18.0.3:9442']\n  key: " + syncKey + "\n",
			"s.yaml:11: sync.peers[1]: duplicate", ErrDuplicate},
		{"no key", "  listen: 198.18.0.2\n  peers: [198.18.0.3]\n",
			"s.yaml:10: sync.key: missing", ErrMissing},
		{"short key", "  listen: 198.18.0.2\n  peers: [198.18.0.3]\n  key: 0011\n",
			"s.yaml:12: sync.key: bad value: the sync key has 4 hex digits, want at least 32", ErrValue},
		{"key not hex", "  listen: 198.18.0.2\n  peers: [198.18.0.3]\n  key: secretsecretsecretsecretsecretsecret\n",
			"s.yaml:12: sync.key: bad value", ErrValue},
		{"both keys", good + "  key_file: /nonexistent\n",
			"s.yaml:13: sync.key_file: bad value: set key or key_file, not both", ErrValue},
		{"missing key file", "  listen: 198.18.0.2\n  peers: [198.18.0.3]\n  key_file: /nonexistent/k\n",
			"s.yaml:12: sync.key_file: bad value: sync key file", ErrValue},
		{"interval", good + "  interval: 2s\n", "s.yaml:13: sync.interval: bad value: 2s is outside", ErrValue},
		{"zero interval", good + "  interval: 0s\n", "s.yaml:13: sync.interval: bad value", ErrValue},
		{"max_message", good + "  max_message: 100\n", "s.yaml:13: sync.max_message: bad value: 100 is outside", ErrValue},
		{"capacity", good + "  capacity: 1\n", "s.yaml:13: sync.capacity: bad value", ErrValue},
		{"refresh", good + "  refresh: 10ms\n", "s.yaml:13: sync.refresh: bad value: 10ms is below 1s", ErrValue},
		{"unknown field", good + "  multicast: yes\n", "s.yaml:13: sync.multicast: unknown field", ErrUnknownField},
		{"group not multicast", good + "  group: 198.18.0.9\n  interface: eth0\n", "s.yaml:13: sync.group: bad value: 198.18.0.9 is not a multicast", ErrValue},
		{"group without interface", good + "  group: 239.255.0.42\n", "s.yaml:13: sync.interface: missing", ErrMissing},
		{"interface without group", good + "  interface: eth0\n", "s.yaml:13: sync.interface: bad value", ErrValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(base+"sync:\n"+tc.section))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) != 1 {
				t.Fatalf("want one ConfigErrors entry, got %v", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant prefix %q", err, tc.want)
			}
			if !errors.Is(err, tc.reason) {
				t.Errorf("error %q does not wrap %v", err, tc.reason)
			}
		})
	}
}
