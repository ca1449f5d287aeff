package health

import (
	"strings"
	"testing"
)

// TestTrackerSequences drives the rise/fall state machine with exact outcome sequences.
func TestTrackerSequences(t *testing.T) {
	type step struct {
		ok   bool
		want State // state after this outcome
	}
	U, D := StateUp, StateDown
	cases := []struct {
		name       string
		initial    State
		rise, fall int
		steps      []step
	}{
		{"unknown then ok", StateUnknown, 2, 3, []step{{true, U}, {false, U}, {false, U}, {false, D}}},
		{"unknown then fail", StateUnknown, 2, 3, []step{{false, D}, {true, D}, {true, U}}},
		{"up: failures must be consecutive", StateUp, 2, 3, []step{
			{false, U}, {false, U}, {true, U}, {false, U}, {false, U}, {false, D}}},
		{"down: successes must be consecutive", StateDown, 3, 1, []step{
			{true, D}, {true, D}, {false, D}, {true, D}, {true, D}, {true, U}, {false, D}}},
		{"rise=fall=1 flips every change", StateUp, 1, 1, []step{
			{false, D}, {false, D}, {true, U}, {true, U}, {false, D}}},
		{"initial down stays down on failures", StateDown, 2, 3, []step{{false, D}, {false, D}, {false, D}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := tracker{state: tc.initial, rise: tc.rise, fall: tc.fall}
			for i, s := range tc.steps {
				before := tr.state
				changed, reason := tr.observe(s.ok, "boom")
				if tr.state != s.want {
					t.Fatalf("step %d (ok=%v): state %v, want %v", i, s.ok, tr.state, s.want)
				}
				if changed != (before != s.want) {
					t.Fatalf("step %d: changed=%v, but %v -> %v", i, changed, before, s.want)
				}
				if changed == (reason == "") {
					t.Fatalf("step %d: changed=%v with reason %q", i, changed, reason)
				}
				if changed && s.want == StateDown && !strings.Contains(reason, "boom") {
					t.Fatalf("step %d: down reason %q lacks the probe error", i, reason)
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateUnknown: "unknown", StateDown: "down", StateUp: "up", 9: "state(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}

func TestCombine(t *testing.T) {
	U, D, N := StateUp, StateDown, StateUnknown
	for _, tc := range []struct {
		in   []State
		want State
	}{
		{nil, N}, {[]State{U}, U}, {[]State{U, U, U}, U}, {[]State{U, N}, N}, {[]State{N, U}, N},
		{[]State{U, D}, D}, {[]State{N, D, U}, D}, {[]State{D}, D}, {[]State{N, N}, N},
	} {
		if got := Combine(tc.in...); got != tc.want {
			t.Errorf("Combine(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
