package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/preflight"
)

// errNotFit: preflight found a check that failed.
var errNotFit = errors.New("this host is not fit to run xlb (see the fail lines)")

func cmdPreflight(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb preflight", stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML): check its interfaces, cores and DR backends too")
	nsGlob := fs.String("netns", "/var/run/netns/*", "network namespaces to look for DR backends in (a `GLOB`)")
	noProbe := fs.Bool("no-probe", false, "do not try an XDP attach and an AF_XDP bind (on many NICs both briefly reset "+
		"the queues: use it on a host that carries traffic)")
	asJSON := fs.Bool("json", false, `print JSON ({"fit": ..., "checks": [{"check", "status", "detail", "fix"}]})`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: xlb preflight takes no arguments", errUsage)
	}
	o := preflight.Options{Netns: *nsGlob, NoProbe: *noProbe}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return fmt.Errorf("configuration refused:\n%w", err)
		}
		o.Dataplane = control.DataplaneConfig(cfg)
		o.DRBackends = preflight.DRBackendsOf(cfg)
	}
	rep := preflight.Run(o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if _, err := rep.WriteTo(stdout); err != nil {
		return err
	}
	if !rep.Fit() {
		return errNotFit
	}
	return nil
}
