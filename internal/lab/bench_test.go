package lab

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func benchBuild(b *testing.B, cfg Config) {
	skipUnlessLab(b)
	b.ReportAllocs()
	for b.Loop() {
		n, err := Build(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// Time to build and remove a whole topology (what every end-to-end test pays once).
func BenchmarkBuildCloseOneArm3(b *testing.B) { benchBuild(b, Config{Backends: 3}) }
func BenchmarkBuildCloseTwoArm3(b *testing.B) { benchBuild(b, Config{Kind: TwoArm, Backends: 3}) }

// Cost of one NS.Do (two setns calls and a namespace handle open/close).
func BenchmarkDo(b *testing.B) {
	skipUnlessLab(b)
	id, err := newID()
	if err != nil {
		b.Fatal(err)
	}
	ns, err := NewNS(id, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	fn := func() error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := ns.Do(fn); err != nil {
			b.Fatal(err)
		}
	}
}

// Baseline for BenchmarkDo: running a command in the namespace through iproute2.
func BenchmarkBaselineIPNetnsExec(b *testing.B) {
	skipUnlessLab(b)
	id, err := newID()
	if err != nil {
		b.Fatal(err)
	}
	ns, err := NewNS(id, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	b.ReportAllocs()
	for b.Loop() {
		if out, err := exec.Command("ip", "netns", "exec", ns.Name(), "true").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// Baseline for BenchmarkBuildCloseOneArm3: the same namespaces, bridge, veths, addresses
// and VIPs made and removed with iproute2 commands (no sysctls, offloads or waiting).
func BenchmarkBaselineIPScriptOneArm3(b *testing.B) {
	skipUnlessLab(b)
	id, err := newID()
	if err != nil {
		b.Fatal(err)
	}
	p := "xlb-" + id + "-"
	var sb strings.Builder
	fmt.Fprintf(&sb, "set -e\nip netns add %ssw\nip -n %ssw link add br0 type bridge\nip -n %ssw link set br0 up\n", p, p, p)
	hosts := []struct {
		role string
		h    int
	}{{"client", 1}, {"lb", 2}, {"b0", 11}, {"b1", 12}, {"b2", 13}}
	for _, h := range hosts {
		ns := p + h.role
		fmt.Fprintf(&sb, "ip netns add %[1]s\nip -n %[1]s link set lo up\n"+
			"ip -n %[2]ssw link add %[3]s type veth peer name eth0 netns %[1]s\n"+
			"ip -n %[2]ssw link set %[3]s master br0 up\n"+
			"ip -n %[1]s addr add 198.18.0.%[4]d/24 dev eth0\nip -n %[1]s addr add 2001:2::%[4]d/64 dev eth0 nodad\n"+
			"ip -n %[1]s link set eth0 up\n", ns, p, h.role, h.h)
		if h.role[0] == 'b' {
			fmt.Fprintf(&sb, "ip -n %[1]s addr add 198.18.0.100/32 dev lo\nip -n %[1]s addr add 2001:2::100/128 dev lo\n", ns)
		}
	}
	up := sb.String()
	var down strings.Builder
	for _, r := range []string{"sw", "client", "lb", "b0", "b1", "b2"} {
		fmt.Fprintf(&down, "ip netns del %s%s\n", p, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if out, err := exec.Command("bash", "-c", up).CombinedOutput(); err != nil {
			_ = exec.Command("bash", "-c", down.String()).Run()
			b.Fatalf("%v: %s", err, out)
		}
		if out, err := exec.Command("bash", "-c", down.String()).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}
