package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// RunOptions configure Run.
type RunOptions struct {
	// Logger receives what xlb does; nil means slog.Default().
	Logger *slog.Logger
	// Reload, when it delivers, re-reads the configuration file (the
	// daemon sends SIGHUP here). A bad file is logged and refused.
	Reload <-chan struct{}
	// ReplaceXDP replaces an XDP program already attached to an interface.
	ReplaceXDP bool
	// Ready, when set, is called once everything runs, with the API's
	// address.
	Ready func(api net.Addr)
}

// DataplaneConfig maps the configuration's interfaces onto the data path's.
func DataplaneConfig(c *config.Config) dataplane.Config {
	dc := dataplane.Config{}
	for _, in := range c.Interfaces {
		dc.Interfaces = append(dc.Interfaces, dataplane.InterfaceConfig{
			Name: in.Name, XDPMode: in.XDPMode.String(), ZeroCopy: in.ZeroCopy.String(), Cores: in.Cores,
			BusyPoll: in.BusyPoll})
	}
	return dc
}

// Run is `xlb run`: it sets up the data path on the configured interfaces,
// starts the controller (health checks, next hops, snapshots), serves the
// API and /metrics, applies reloads, and tears everything down when ctx is
// done. It returns the first fatal error.
func Run(ctx context.Context, cfg *config.Config, opts RunOptions) (err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// Open the API first: a refused listener must not leave XDP attached.
	ln, token, err := OpenAPI(&cfg.API)
	if err != nil {
		return err
	}
	defer ln.Close()
	sock, err := OpenAPISocket(&cfg.API)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
	}

	dc := DataplaneConfig(cfg)
	dc.ReplaceXDP = opts.ReplaceXDP
	dp, err := dataplane.New(dc)
	if err != nil {
		return fmt.Errorf("data path: %w", err)
	}
	defer func() {
		if cerr := dp.Close(); cerr != nil {
			log.Warn("data path close", "err", cerr)
		}
		log.Info("data path closed, XDP programs detached")
	}()
	for _, in := range dp.Interfaces() {
		log.Info("interface ready", "name", in.Name, "ifindex", in.Index, "queues", in.Queues,
			"xdp_mode", in.XDPMode, "zero_copy", in.ZeroCopy, "mtu", in.MTU)
	}

	// With VRRP the controller publishes through a Standby: nothing is
	// forwarded until this host is the master.
	pub, vr, err := vrrpFor(cfg, dp, log)
	if err != nil {
		return err
	}
	c, err := New(cfg, Options{Publisher: pub, Stats: dp, Logger: log})
	if err != nil {
		return err
	}
	metrics := NewMetrics(c)
	if vr != nil {
		metrics.Registry().MustRegister(vrrpCollector{vr})
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer c.Close()
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("data path start: %w", err)
	}
	for _, werr := range dp.WorkerErrors() {
		log.Warn("worker", "err", werr)
	}
	if vr != nil {
		log.Info("data path ready; forwarding while VRRP master", "services", len(cfg.Services), "workers", len(dp.Stats()))
	} else {
		log.Info("forwarding", "services", len(cfg.Services), "workers", len(dp.Stats()))
	}
	ann, err := startBGPFor(ctx, cfg, c, metrics, log)
	if err != nil {
		return err
	}
	// Runs before the data path closes: withdraw, wait while forwarding, stop.
	defer ann.Shutdown()
	if vr != nil {
		vr.start(ctx)
		defer vr.stop() // resign first: a master sends priority 0, stops forwarding, drops the VIPs
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	access := NewAccess(token)
	metrics.Registry().MustRegister(DefenceCollector{D: dp, A: access})
	h := NewHandler(c, HandlerOptions{Access: access, Metrics: metrics.Handler(), BGP: ann,
		VRRP: vr.source(), Defence: dp})
	served := make(chan error, 2)
	go func() { served <- Serve(sctx, ln, h, log) }()
	log.Info("api listening", "addr", ln.Addr().String(), "token", token != "", "tls", cfg.API.TLSCert != "")
	if sock != nil {
		go func() { served <- Serve(sctx, sock, h, log) }()
		log.Info("api socket", "path", cfg.API.SocketPath(), "group", cfg.API.SocketGroup)
	}
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			stop()
			<-served
			if sock != nil {
				<-served
			}
			return nil
		case err := <-served:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("api: %w", err)
			}
			return nil
		case err := <-vr.errc():
			return fmt.Errorf("vrrp: %w", err)
		case <-opts.Reload:
			log.Info("reload requested")
			_ = c.ReloadFile("") // logged by the controller either way
		}
	}
}
