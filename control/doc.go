// Package control is xlb's control plane: it holds the running
// configuration (a config.Config, normalised and validated by New and
// Reload), gives every backend an ID that is stable for
// its life and never reused, resolves each backend's next hop (egress
// interface and MAC) through the kernel's routing and neighbour tables and
// follows neighbour changes, runs a health check per backend, and turns all
// of it, with the weight, drain and enable/disable changes of the HTTP API,
// into immutable dataplane snapshots that it publishes off the packet path.
// A reload (SIGHUP, the API, or Controller.Reload) keeps the IDs, health
// state and Maglev inputs of the backends that stay, so flows on healthy
// backends are not moved; a bad configuration is refused with every error and
// the running one stays. NewHandler serves the JSON API and Prometheus
// /metrics (NewMetrics), Client is what `xlb ctl` uses, NewVRRP and StartBGP
// run the vrrp and bgp sections. Package xlb wires them into one balancer.
package control
