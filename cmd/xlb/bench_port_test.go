package main

import (
	"bytes"
	"strings"
	"testing"
)

// xlb bench gen refuses what it cannot send, before opening anything, with the reason.
func TestBenchGenRefuses(t *testing.T) {
	base := []string{"bench", "gen", "--dst-mac", "02:00:00:00:00:01", "--dst", "198.18.0.100"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no such interface", []string{"--iface", "xlbnope0"}, 1, `interface "xlbnope0"`},
		{"zero rate", []string{"--iface", "lo", "--rate", "0"}, 2, `--rate "0"`},
		{"negative rate", []string{"--iface", "lo", "--rate", "-5k"}, 2, `--rate "-5k"`},
		{"frame too small", []string{"--iface", "lo", "--size", "20"}, 1, "frame size 20 (want 64..1518)"},
		{"frame too large", []string{"--iface", "lo", "--size", "64,9000"}, 1, "frame size 9000 (want 64..1518)"},
		{"not a size", []string{"--iface", "lo", "--size", "big"}, 1, `frame size "big"`},
		{"no interface", nil, 2, "--iface is required"},
		{"bad protocol", []string{"--iface", "lo", "--proto", "sctp"}, 1, `protocol "sctp"`},
		{"rfc2544 without sink", []string{"--iface", "lo", "--rfc2544"}, 2, "--rfc2544 needs --sink"},
		{"address outside the benchmarking range", []string{"--iface", "lo", "--src-pool", "10.0.0.0/16"}, 1, "source pool 10.0.0.0/16"},
		{"no such cpu", []string{"--iface", "lo", "--cpus", "4096"}, 1, "cpu 4096"},
		{"more queues than the interface has", []string{"--iface", "lo", "--queues", "64"}, 1, "64 asked"},
		{"zero copy mode", []string{"--iface", "lo", "--zero-copy", "always"}, 2, `--zero-copy "always"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append(append([]string{}, base...), tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), tc.code, tc.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"max": 0, "": 0, "1000": 1000, "2.5k": 2500, "14.88M": 14.88e6, "1G": 1e9} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %g, %v; want %g", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "fast", "1T", "0k", "NaN"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}
