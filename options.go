package xlb

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/ha"
)

// Option configures New.
type Option func(*options)

type options struct {
	log        *slog.Logger
	api        bool
	apiListen  string
	apiSocket  string
	registry   *prometheus.Registry
	haOpts     []ha.Option
	noVRRP     bool
	noBGP      bool
	dataPath   DataPath
	resolver   control.Resolver
	replaceXDP bool
}

// WithLogger sends what the LB does to log (default slog.Default()).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithAPI serves the HTTP API and /metrics (what `xlb ctl` talks to) while
// Run runs: on listen, or on the configuration's api.listen when listen is
// "". The configuration's token applies; beyond loopback one is required.
// Off by default: an embedding program has the LB's methods.
func WithAPI(listen string) Option {
	return func(o *options) { o.api, o.apiListen = true, listen }
}

// WithAPISocket puts the API's unix socket at path instead of the
// configuration's api.socket ("none": no socket). With WithAPI only.
func WithAPISocket(path string) Option { return func(o *options) { o.apiSocket = path } }

// WithRegistry registers the LB's metrics in reg (the program's own
// registry) instead of a registry of their own; /metrics then serves reg.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// WithVRRP passes options to the VRRP router of the configuration's vrrp
// section (e.g. ha.WithTransport). The section decides whether VRRP runs.
func WithVRRP(opts ...ha.Option) Option {
	return func(o *options) { o.haOpts = append(o.haOpts, opts...) }
}

// WithoutVRRP ignores the configuration's vrrp section: the LB forwards as
// if it were the only host.
func WithoutVRRP() Option { return func(o *options) { o.noVRRP = true } }

// WithoutBGP ignores the configuration's bgp section: no speaker runs and
// nothing is announced.
func WithoutBGP() Option { return func(o *options) { o.noBGP = true } }

// WithDataPath has the LB drive dp instead of attaching AF_XDP sockets and
// the XDP program to the configured interfaces. Run starts dp and closes it
// when it returns.
func WithDataPath(dp DataPath) Option { return func(o *options) { o.dataPath = dp } }

// WithResolver finds the backends' next hops with r instead of the kernel's
// routing and neighbour tables.
func WithResolver(r control.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithReplaceXDP replaces an XDP program already attached to an interface
// (without it, Run refuses such an interface).
func WithReplaceXDP() Option { return func(o *options) { o.replaceXDP = true } }
