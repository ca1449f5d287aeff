package encap

import (
	"errors"
	"testing"
)

func TestParseMethod(t *testing.T) {
	for _, m := range []Method{MethodDR, MethodTunnel, MethodNAT} {
		got, err := ParseMethod(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
		var u Method
		b, err := m.MarshalText()
		if err != nil || u.UnmarshalText(b) != nil || u != m {
			t.Errorf("text round trip of %v: %q, %v -> %v", m, b, err, u)
		}
	}
	for _, bad := range []string{"masq", "", "DR"} {
		if _, err := ParseMethod(bad); !errors.Is(err, ErrBadMethod) {
			t.Errorf("ParseMethod(%q): %v", bad, err)
		}
	}
	if _, err := Method(0).MarshalText(); !errors.Is(err, ErrBadMethod) {
		t.Errorf("MarshalText of the zero method: %v", err)
	}
}
