// Package config is xlb's configuration schema: the types of the YAML file
// (interfaces, services, backends, health checks, api, and the optional vrrp
// and bgp sections), its decoding with an error per problem naming the file,
// the line and the reason (Parse, Load; a FieldError each, all of them in a
// ConfigErrors), the defaults (Normalize) and the validation (Validate).
//
// The enumerated fields are typed values with one parser each: Method
// (encap's dr, tunnel, nat), Scheduler (sched's strategies), Protocol,
// HealthKind, XDPMode and ZeroCopy. Their zero value means "not set" and
// Normalize fills in the default; String and MarshalText give the
// configuration name back, so the API and the CLI show what the file says.
//
// A Config built in Go needs no positions: whoever takes one (control.New,
// xlb.New) normalises and validates it. The package knows the schema, not how
// it is applied.
package config
