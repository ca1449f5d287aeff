package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ipvs"
	"github.com/xlb-dev/xlb/sched"
)

// ipvsProbe is what IPVS looks at; tests replace its parts.
type ipvsProbe struct {
	procFile string                       // exists when ip_vs is loaded
	modprobe func() error                 // loads ip_vs
	lookPath func(string) (string, error) // finds ipvsadm
}

var hostIPVS = ipvsProbe{
	procFile: "/proc/net/ip_vs",
	modprobe: func() error { return exec.Command("modprobe", "-q", "ip_vs").Run() },
	lookPath: exec.LookPath,
}

// IPVS reports whether the IPVS baselines can run here: the kernel has ip_vs (it checks
// /proc/net/ip_vs, then tries modprobe) and ipvsadm is installed. The error says why not.
func IPVS() error { return hostIPVS.check() }

func (p ipvsProbe) check() error {
	if _, err := os.Stat(p.procFile); err != nil {
		merr := p.modprobe()
		if _, err := os.Stat(p.procFile); err != nil {
			return fmt.Errorf("%w: no ip_vs in this kernel (no %s; modprobe ip_vs: %v)", ErrUnavailable, p.procFile, merr)
		}
	}
	if _, err := p.lookPath("ipvsadm"); err != nil {
		return fmt.Errorf("%w: ipvsadm not installed: %w", ErrUnavailable, err)
	}
	return nil
}

// ipvsRules are the ipvsadm-restore rules of the bench's service for variant: xlb's export
// of the same service xlb runs (VIP:9000, the generator's protocol, Maglev as IPVS mh, the
// three backends), by direct routing or IPIP.
func ipvsRules(variant string, proto Proto) (string, error) {
	s := config.Service{Name: "bench", VIP: VIP, Port: VIPPort, Protocol: config.UDP, Method: config.MethodDR,
		Scheduler: sched.Maglev}
	if proto != UDP {
		s.Protocol = config.TCP
	}
	if variant == IPVSTunnel {
		s.Method, s.TunnelSource = config.MethodTunnel, netip.PrefixFrom(TunnelSrc, 32)
	}
	one := uint32(1)
	for i := range numBackends {
		a, _ := Backend(i)
		s.Backends = append(s.Backends, config.Backend{Address: a, Weight: &one})
	}
	e, err := ipvs.FromConfig(&config.Config{Services: []config.Service{s}})
	if err != nil {
		return "", err
	}
	return e.Text(), nil
}

// startIPVS loads the variant's IPVS rules into the namespace, with the VIP on lo (IPVS
// serves addresses the host owns); closing clears them.
func (t *Topology) startIPVS(c Case) (*dut, error) {
	if err := IPVS(); err != nil {
		return nil, err
	}
	rules, err := ipvsRules(c.Variant, c.Proto)
	if err != nil {
		return nil, err
	}
	vip := netip.PrefixFrom(VIP, 32)
	if err := t.NS.AddAddr("lo", vip); err != nil {
		return nil, err
	}
	stop := func() error {
		_, cerr := t.NS.Run("ipvsadm", "-C")
		return errors.Join(cerr, t.NS.DelAddr("lo", vip))
	}
	cmd := exec.Command("ip", "netns", "exec", t.NS.Name(), "ipvsadm", "-R")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("bench: ipvsadm -R: %s: %w", strings.TrimSpace(string(out)), err), stop())
	}
	return &dut{close: stop}, nil
}
