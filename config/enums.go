package config

import (
	"fmt"
	"strings"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// The enumerated fields are typed values, parsed in one place each: by their
// ParseX function, which UnmarshalText (the YAML decoder, JSON) also calls.
// Their zero value means "not set"; Normalize fills in the default. String
// and MarshalText return the configuration name.

// Method is a service's forwarding method: dr, tunnel or nat (encap
// implements the three rewrites and parses their names: encap.ParseMethod).
type Method = encap.Method

// The forwarding methods.
const (
	MethodDR     = encap.MethodDR
	MethodTunnel = encap.MethodTunnel
	MethodNAT    = encap.MethodNAT
)

// Scheduler is a service's scheduling strategy: maglev, rr, wrr, random,
// source-hash, least-conn, least-load or flow-hash (sched.ParseStrategy). Its
// zero value is maglev, the default.
type Scheduler = sched.Strategy

// Protocol is a service's transport protocol; its value is the IP protocol
// number.
type Protocol uint8

// The protocols.
const (
	TCP Protocol = encap.ProtoTCP
	UDP Protocol = encap.ProtoUDP
)

// ParseProtocol parses tcp or udp.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("%w: %q is not one of tcp, udp", ErrValue, s)
}

// Valid reports whether p is TCP or UDP.
func (p Protocol) Valid() bool { return p == TCP || p == UDP }

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// MarshalText returns tcp or udp.
func (p Protocol) MarshalText() ([]byte, error) { return marshal(p) }

// UnmarshalText parses tcp or udp.
func (p *Protocol) UnmarshalText(b []byte) error { return unmarshal(p, ParseProtocol, b) }

// HealthKind is what a health check does.
type HealthKind uint8

// The health check kinds.
const (
	HealthICMP  HealthKind = iota + 1 // ICMP echo to the backend
	HealthTCP                         // a TCP connection to the health port
	HealthHTTP                        // an HTTP GET
	HealthHTTPS                       // an HTTP GET over TLS
	HealthNone                        // no check: the backend is always up
	HealthExec                        // a program's exit status (keepalived's MISC_CHECK)
	HealthUDP                         // a UDP request answered (not refused)
	HealthDNS                         // a DNS query answered with the expected rcode
	HealthSMTP                        // an SMTP banner, EHLO and QUIT
	HealthTLS                         // a TLS handshake, optionally followed by an HTTP GET
	numHealthKinds
)

var healthKindNames = [numHealthKinds]string{HealthICMP: "icmp", HealthTCP: "tcp", HealthHTTP: "http",
	HealthHTTPS: "https", HealthNone: "none", HealthExec: "exec", HealthUDP: "udp", HealthDNS: "dns",
	HealthSMTP: "smtp", HealthTLS: "tls"}

// ParseHealthKind parses icmp, tcp, http, https, none, exec, udp, dns, smtp or tls.
func ParseHealthKind(s string) (HealthKind, error) {
	return parseNamed[HealthKind](healthKindNames[:], s)
}

// Valid reports whether k is one of the kinds.
func (k HealthKind) Valid() bool { return k > 0 && k < numHealthKinds }

func (k HealthKind) String() string { return nameOf("kind", healthKindNames[:], k) }

// Web reports whether k is http or https.
func (k HealthKind) Web() bool { return k == HealthHTTP || k == HealthHTTPS }

// UsesPort reports whether the check talks to a port of the backend (every kind but icmp,
// exec and none).
func (k HealthKind) UsesPort() bool {
	return k.Valid() && k != HealthICMP && k != HealthExec && k != HealthNone
}

// MarshalText returns the kind's name.
func (k HealthKind) MarshalText() ([]byte, error) { return marshal(k) }

// UnmarshalText parses a kind's name.
func (k *HealthKind) UnmarshalText(b []byte) error { return unmarshal(k, ParseHealthKind, b) }

// XDPMode is how an interface's XDP program is attached.
type XDPMode uint8

// The XDP attach modes.
const (
	XDPAuto    XDPMode = iota + 1 // native, falling back to generic
	XDPNative                     // in the driver, or fail
	XDPGeneric                    // generic (skb) mode
	numXDPModes
)

var xdpModeNames = [numXDPModes]string{XDPAuto: "auto", XDPNative: "native", XDPGeneric: "generic"}

// ParseXDPMode parses auto, native or generic.
func ParseXDPMode(s string) (XDPMode, error) { return parseNamed[XDPMode](xdpModeNames[:], s) }

// Valid reports whether m is one of the modes.
func (m XDPMode) Valid() bool { return m > 0 && m < numXDPModes }

func (m XDPMode) String() string { return nameOf("xdp_mode", xdpModeNames[:], m) }

// MarshalText returns the mode's name.
func (m XDPMode) MarshalText() ([]byte, error) { return marshal(m) }

// UnmarshalText parses a mode's name.
func (m *XDPMode) UnmarshalText(b []byte) error { return unmarshal(m, ParseXDPMode, b) }

// ZeroCopy is whether an interface's AF_XDP sockets use zero-copy mode.
type ZeroCopy uint8

// The zero-copy settings.
const (
	ZeroCopyAuto ZeroCopy = iota + 1 // zero-copy, falling back to copy
	ZeroCopyOn                       // zero-copy or fail
	ZeroCopyOff                      // copy mode
	numZeroCopies
)

var zeroCopyNames = [numZeroCopies]string{ZeroCopyAuto: "auto", ZeroCopyOn: "on", ZeroCopyOff: "off"}

// ParseZeroCopy parses auto, on or off.
func ParseZeroCopy(s string) (ZeroCopy, error) { return parseNamed[ZeroCopy](zeroCopyNames[:], s) }

// Valid reports whether z is one of the settings.
func (z ZeroCopy) Valid() bool { return z > 0 && z < numZeroCopies }

func (z ZeroCopy) String() string { return nameOf("zero_copy", zeroCopyNames[:], z) }

// MarshalText returns the setting's name.
func (z ZeroCopy) MarshalText() ([]byte, error) { return marshal(z) }

// UnmarshalText parses a setting's name.
func (z *ZeroCopy) UnmarshalText(b []byte) error { return unmarshal(z, ParseZeroCopy, b) }

// parseNamed finds s in names (indexed by value; index 0 is "not set").
func parseNamed[T ~uint8](names []string, s string) (T, error) {
	for i, n := range names {
		if i > 0 && n == s {
			return T(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not one of %s", ErrValue, s, strings.Join(names[1:], ", "))
}

func nameOf[T ~uint8](what string, names []string, v T) string {
	if int(v) > 0 && int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", what, uint8(v))
}

type validator interface {
	Valid() bool
	String() string
}

func marshal(v validator) ([]byte, error) {
	if !v.Valid() {
		return nil, fmt.Errorf("%w: %s", ErrValue, v)
	}
	return []byte(v.String()), nil
}

func unmarshal[T any](v *T, parse func(string) (T, error), b []byte) error {
	p, err := parse(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
