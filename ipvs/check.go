package ipvs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The grammar Check reads: ipvsadm-restore input, one ipvsadm command per line (ipvsadm(8)):
//
//	line     = "-A" service [-s SCHED] [-p [TIMEOUT]] [-M NETMASK] [-b FLAGS] [--pe ENGINE] [-o]
//	         | "-E" (the same)
//	         | "-a" service -r server [-g | -i | -m] [-w WEIGHT] [-x UPPER] [-y LOWER]
//	         | "-e" (the same)
//	         | "-D" service | "-d" service -r server | "-C"
//	service  = (-t | -u | --sctp-service) ADDR:PORT | -f MARK [-6]
//	ADDR     = IPv4 | "[" IPv6 "]"
//
// Long option names (--add-service, --tcp-service, --scheduler, ...) are accepted for their
// short forms; a # and the rest of its line are ignored, as ipvsadm's reader does.

// ErrGrammar is wrapped by every error Check returns.
var ErrGrammar = errors.New("ipvs: not ipvsadm-restore input")

// Schedulers are the IPVS schedulers the kernel ships.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

var schedFlags = []string{"flag-1", "flag-2", "flag-3", "sh-fallback", "sh-port", "mh-fallback", "mh-port"}

var longNames = map[string]string{
	"--ops": "-o", "--add-service": "-A", "--edit-service": "-E", "--delete-service": "-D", "--clear": "-C",
	"--add-server": "-a", "--edit-server": "-e", "--delete-server": "-d",
	"--tcp-service": "-t", "--udp-service": "-u", "--fwmark-service": "-f", "--scheduler": "-s",
	"--persistent": "-p", "--netmask": "-M", "--sched-flags": "-b", "--real-server": "-r",
	"--gatewaying": "-g", "--ipip": "-i", "--masquerading": "-m", "--weight": "-w",
	"--u-threshold": "-x", "--l-threshold": "-y", "--ipv6": "-6",
}

// Check reads ipvsadm-restore input and returns the first line that ipvsadm would refuse,
// as "line N: reason", or a real server added to a service no earlier line added.
func Check(r io.Reader) error {
	sc := bufio.NewScanner(r)
	services := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#") // ipvsadm ignores a # and the rest of its line
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := checkLine(strings.Fields(line), services); err != nil {
			return fmt.Errorf("%w: line %d: %w", ErrGrammar, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrGrammar, err)
	}
	return nil
}

// command is one parsed line.
type command struct {
	cmd, service, server, fwd string
	opts                      map[string]string
}

func checkLine(args []string, services map[string]bool) error {
	c, err := parseLine(args)
	if err != nil {
		return err
	}
	allowed := map[string][]string{
		"-A": {"-s", "-p", "-M", "-b", "--pe", "-o"}, "-E": {"-s", "-p", "-M", "-b", "--pe", "-o"},
		"-a": {"-r", "-w", "-x", "-y"}, "-e": {"-r", "-w", "-x", "-y"},
		"-D": {}, "-d": {"-r"}, "-C": {},
	}[c.cmd]
	for o := range c.opts {
		if !slices.Contains(allowed, o) {
			return fmt.Errorf("option %s does not go with %s", o, c.cmd)
		}
	}
	if c.fwd != "" && c.cmd != "-a" && c.cmd != "-e" {
		return fmt.Errorf("forwarding method %s does not go with %s", c.fwd, c.cmd)
	}
	switch c.cmd {
	case "-C":
		if c.service != "" {
			return errors.New("-C takes no service")
		}
		clear(services)
		return nil
	}
	if c.service == "" {
		return fmt.Errorf("%s needs a service (-t, -u or -f)", c.cmd)
	}
	switch c.cmd {
	case "-A":
		if services[c.service] {
			return fmt.Errorf("service %s added twice", c.service)
		}
		services[c.service] = true
	case "-a", "-e", "-d":
		if c.server == "" {
			return fmt.Errorf("%s needs a real server (-r)", c.cmd)
		}
		if !services[c.service] {
			return fmt.Errorf("real server for service %s, which no earlier line added", c.service)
		}
	case "-D":
		delete(services, c.service)
	}
	return nil
}

// parseLine reads the command, the service, the forwarding flag and the options of a line,
// checking each value.
func parseLine(args []string) (*command, error) {
	c := &command{opts: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if l, ok := longNames[a]; ok {
			a = l
		}
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		switch a {
		case "-A", "-E", "-D", "-a", "-e", "-d", "-C":
			if c.cmd != "" {
				return nil, fmt.Errorf("two commands: %s and %s", c.cmd, a)
			}
			c.cmd = a
		case "-t", "-u", "--sctp-service", "-f":
			if c.service != "" {
				return nil, errors.New("two services")
			}
			v, err := val()
			if err != nil {
				return nil, err
			}
			if err := checkService(a, v); err != nil {
				return nil, err
			}
			c.service = a + " " + v
		case "-6":
			if !strings.HasPrefix(c.service, "-f ") {
				return nil, errors.New("-6 before -f")
			}
			c.service += " -6"
		case "-g", "-i", "-m":
			if c.fwd != "" {
				return nil, fmt.Errorf("two forwarding methods: %s and %s", c.fwd, a)
			}
			c.fwd = a
		case "-o":
			c.opts[a] = ""
		case "-p":
			c.opts[a] = ""
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				v, _ := val()
				if n, err := strconv.Atoi(v); err != nil || n < 1 {
					return nil, fmt.Errorf("persistence timeout %q", v)
				}
				c.opts[a] = v
			}
		case "-s", "-M", "-b", "--pe", "-r", "-w", "-x", "-y":
			if _, dup := c.opts[a]; dup {
				return nil, fmt.Errorf("%s given twice", a)
			}
			v, err := val()
			if err != nil {
				return nil, err
			}
			if err := checkOption(a, v); err != nil {
				return nil, err
			}
			c.opts[a] = v
			if a == "-r" {
				c.server = v
			}
		default:
			return nil, fmt.Errorf("unknown argument %q", a)
		}
	}
	if c.cmd == "" {
		return nil, errors.New("no command (-A, -E, -D, -a, -e, -d or -C)")
	}
	return c, nil
}

func checkService(kind, v string) error {
	if kind == "-f" {
		if n, err := strconv.ParseUint(v, 0, 32); err != nil || n == 0 {
			return fmt.Errorf("firewall mark %q", v)
		}
		return nil
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return fmt.Errorf("service address %q (want ADDR:PORT or [IPv6]:PORT)", v)
	}
	if ap.Port() == 0 {
		return fmt.Errorf("service %s: port 0 needs persistence or a firewall mark", v)
	}
	return nil
}

func checkOption(o, v string) error {
	num := func(lo, hi int) error {
		if n, err := strconv.Atoi(v); err != nil || n < lo || n > hi {
			return fmt.Errorf("%s %q (want %d..%d)", o, v, lo, hi)
		}
		return nil
	}
	switch o {
	case "-s":
		if !slices.Contains(Schedulers, v) {
			return fmt.Errorf("scheduler %q (IPVS has %s)", v, strings.Join(Schedulers, ", "))
		}
	case "-b":
		for _, f := range strings.Split(v, ",") {
			if !slices.Contains(schedFlags, f) {
				return fmt.Errorf("scheduler flag %q", f)
			}
		}
	case "-r":
		if _, err := netip.ParseAddrPort(v); err == nil {
			return nil
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return fmt.Errorf("real server %q (want ADDR[:PORT] or [IPv6]:PORT)", v)
		}
	case "-w":
		return num(0, 65535)
	case "-x", "-y":
		return num(0, 1<<31-1)
	case "-M":
		if _, err := netip.ParseAddr(v); err != nil {
			return num(1, 128)
		}
	}
	return nil
}
