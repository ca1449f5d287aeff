package bench

import "testing"

func TestNapiNiceFrom(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"/autogroup-58 nice -10\n", -5}, // under Prioritize
		{"/autogroup-58 nice 0\n", 5},
		{"/autogroup-7 nice 17\n", 19}, // clamped
		{"/autogroup-7 nice -20\n", -15},
		{"", 5},                      // no autogroup file: nice 0
		{"/autogroup-7 nice x\n", 5}, // unparsable: nice 0
		{"garbage with four words", 5},
	} {
		if got := napiNiceFrom(c.in); got != c.want {
			t.Errorf("napiNiceFrom(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
