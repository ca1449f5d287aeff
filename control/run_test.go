package control

import (
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
)

const base = `interfaces:
  - name: eth0
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - address: 198.18.0.11
`

func TestBusyPollReachesDataplane(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"", false},
		{"    busy_poll: true\n", true},
		{"    busy_poll: false\n", false},
	} {
		cfg, err := config.Parse("x.yaml", []byte(strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n"+tc.yaml, 1)))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := DataplaneConfig(cfg).Interfaces[0].BusyPoll; got != tc.want {
			t.Errorf("%q: dataplane BusyPoll %v, want %v", tc.yaml, got, tc.want)
		}
	}
	_, err := config.Parse("x.yaml", []byte(strings.Replace(base, "  - name: eth0\n", "  - name: eth0\n    busy_poll: often\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "x.yaml:3:") {
		t.Errorf("busy_poll: often: got %v, want an error at x.yaml:3", err)
	}
}
