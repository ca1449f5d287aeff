package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/pkg/profile"

	"github.com/xlb-dev/xlb"
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/internal/caps"
)

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlagSet("xlb run", stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	prof := fs.String("profile", "", "write a profile to the working directory: cpu or mem")
	level := fs.String("log-level", "info", "`LEVEL` of the log: debug, info, warn or error")
	replace := fs.Bool("replace-xdp", false, "replace an XDP program already attached to an interface")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: xlb run needs --config FILE (and no other arguments)", errUsage)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level %q", errUsage, *level)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("configuration refused:\n%w", err)
	}
	if *check {
		fmt.Fprintf(stderr, "%s: configuration OK (%d interfaces, %d services)\n", *cfgPath, len(cfg.Interfaces), len(cfg.Services))
		return nil
	}
	switch *prof {
	case "":
	case "cpu":
		defer profile.Start(profile.CPUProfile, profile.ProfilePath("."), profile.NoShutdownHook).Stop()
	case "mem":
		defer profile.Start(profile.MemProfile, profile.ProfilePath("."), profile.NoShutdownHook).Stop()
	default:
		return fmt.Errorf("%w: --profile %q (want cpu or mem)", errUsage, *prof)
	}

	opts := []xlb.Option{xlb.WithAPI(""), xlb.WithLogger(log)}
	if *replace {
		opts = append(opts, xlb.WithReplaceXDP())
	}
	lb, err := xlb.New(cfg, opts...)
	if err != nil {
		return err
	}
	defer lb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("reload requested")
				_ = lb.Controller().ReloadFile("") // logged by the controller either way
			case <-ctx.Done():
				return
			}
		}
	}()
	log.Info("xlb starting", "version", versionString(), "config", *cfgPath, "pid", os.Getpid())
	err = lb.Run(ctx)
	// A failure for want of a capability names the ones missing and what needs them.
	umem := uint64(4096 * 4096) // the data path's default frame size and count
	return caps.Explain(err, umem*uint64(runtime.NumCPU())*uint64(len(cfg.Interfaces)))
}
