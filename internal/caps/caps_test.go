package caps

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissing(t *testing.T) {
	all := Of(Required...)
	if m := Missing(all, 1<<62); len(m) != 0 {
		t.Errorf("all present: missing %v", m)
	}
	have := all &^ (1 << unix.CAP_BPF)
	m := Missing(have, 1<<62)
	if len(m) != 1 || m[0].Name != "CAP_BPF" {
		t.Errorf("without CAP_BPF: missing %v", m)
	}
	// CAP_IPC_LOCK is not needed when the memlock limit covers the UMEMs.
	if m := Missing(all&^(1<<unix.CAP_IPC_LOCK), 0); len(m) != 0 {
		t.Errorf("without CAP_IPC_LOCK but enough memlock: missing %v", m)
	}
	if got := Of(Required[0], Required[2]).Names(); strings.Join(got, ",") != "CAP_NET_ADMIN,CAP_BPF" {
		t.Errorf("names: %v", got)
	}
}

func TestExplain(t *testing.T) {
	if Explain(nil, 0) != nil {
		t.Error("nil must stay nil")
	}
	base := errors.New("load program: permission denied")
	err := &MissingError{Err: base, Missing: Required[3:4]}
	msg := err.Error()
	for _, want := range []string{"permission denied", "CAP_PERFMON: the verifier", "--ambient-caps +perfmon"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, base) || !errors.Is(err, ErrMissing) {
		t.Error("the error must wrap both the failure and ErrMissing")
	}
	if os.Geteuid() == 0 {
		if have, err := Effective(); err != nil || !have.Has(unix.CAP_NET_ADMIN) {
			t.Errorf("root's effective set: %x, %v", have, err)
		}
		if got := Explain(base, 0); got != base {
			t.Errorf("as root Explain must not change the error: %v", got)
		}
	}
}
