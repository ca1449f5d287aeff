package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/preflight"
)

// errNotFit: preflight found a check that failed.
var errNotFit = errors.New("this host is not fit to run xlb (see the fail lines)")

func cmdPreflight(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb preflight", stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML): check its interfaces, cores and DR backends too")
	nsGlob := fs.String("netns", "/var/run/netns/*", "network namespaces to look for DR backends in (a `GLOB`)")
	noProbe := fs.Bool("no-probe", false, "do not try an XDP attach and an AF_XDP bind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: xlb preflight takes no arguments", errUsage)
	}
	o := preflight.Options{Netns: *nsGlob, NoProbe: *noProbe}
	if *cfgPath != "" {
		cfg, err := control.LoadConfig(*cfgPath)
		if err != nil {
			return fmt.Errorf("configuration refused:\n%w", err)
		}
		o.Dataplane = cfg.DataplaneConfig()
		o.DRBackends = drBackends(cfg)
	}
	rep := preflight.Run(o)
	if _, err := rep.WriteTo(stdout); err != nil {
		return err
	}
	if !rep.Fit() {
		return errNotFit
	}
	return nil
}

// drBackends lists the backends of cfg's direct-routing services with the
// VIPs each must hold.
func drBackends(cfg *control.Config) []preflight.DRBackend {
	var out []preflight.DRBackend
	for _, s := range cfg.Services {
		if s.Method != "" && s.Method != "dr" {
			continue
		}
		for _, b := range append(slices.Clone(s.Backends), s.Fallback...) {
			i := slices.IndexFunc(out, func(d preflight.DRBackend) bool { return d.Addr == b.Address })
			if i < 0 {
				out = append(out, preflight.DRBackend{Addr: b.Address})
				i = len(out) - 1
			}
			if !slices.Contains(out[i].VIPs, s.VIP) {
				out[i].VIPs = append(out[i].VIPs, s.VIP)
			}
		}
	}
	return out
}
