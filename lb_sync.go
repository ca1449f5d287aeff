package xlb

import (
	"context"
	"fmt"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/control"
)

// newSync builds the connection sync node of cfg's sync section (nil without one) and
// registers its metrics; it opens nothing.
func (lb *LB) newSync(cfg *config.Config) error {
	if cfg.Sync == nil {
		return nil
	}
	// The peers' entries expire by the same timeouts as the data path's connection tables.
	nc, err := cfg.Sync.NodeConfig(cfg.ConnTable.Timeouts.Sched())
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	n, err := connsync.New(nc)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := lb.met.Registry().Register(control.SyncCollector(n)); err != nil {
		return fmt.Errorf("sync metrics: %w", err)
	}
	lb.sync = n
	return nil
}

// startSync opens the sync socket and serves it until ctx ends; stop waits for it.
func (lb *LB) startSync(ctx context.Context) (stop func(), err error) {
	if lb.sync == nil {
		return func() {}, nil
	}
	pc, err := lb.sync.Listen()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lb.sync.Serve(ctx, pc)
	}()
	lb.log.Info("connection sync", "listen", pc.LocalAddr().String(), "peers", len(lb.cfg.Sync.Peers))
	return func() { cancel(); <-done }, nil
}
