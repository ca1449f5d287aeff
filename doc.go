// Package xlb is the front door for embedding the xlb load balancer in a Go
// program: New(cfg, opts...) checks a configuration (a config.Config, read
// from YAML by config.Load or built in Go) and builds the balancer without
// touching the system; Run(ctx) attaches the AF_XDP data path to the
// configured interfaces, starts the health checks, the next-hop resolution
// and, when configured, the VRRP router or the BGP speaker, and forwards
// until ctx ends; Close stops it and leaves no XDP program, policy rule or
// nftables table behind. The LB's Controller changes weights and drains
// backends and reloads configurations; Status reports the live state. The
// HTTP API (what `xlb ctl` talks to) is off unless WithAPI asks for it.
//
// `xlb run` is a thin caller of this package. The packages below it are
// config (the schema), control (snapshots, API, metrics), dataplane,
// sched, encap, health, ha and bgp.
package xlb
