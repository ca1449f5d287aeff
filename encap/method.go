package encap

import (
	"errors"
	"fmt"
	"strings"
)

// Method is how a load balancer forwards a packet to its backend: one of the three rewrites
// this package implements. The zero value is "not set" (configurations fill in MethodDR).
type Method uint8

// The forwarding methods.
const (
	// MethodDR rewrites only the MAC addresses (SetMACs); the backend holds the VIP on its
	// loopback.
	MethodDR Method = iota + 1
	// MethodTunnel prepends an outer IPv4 or IPv6 header (Tunnel.Encap: IPIP, IP6IP6,
	// IPv4-in-IPv6).
	MethodTunnel
	// MethodNAT rewrites the destination address and port (NAT); replies come back through
	// the load balancer.
	MethodNAT
	numMethods
)

var methodNames = [numMethods]string{MethodDR: "dr", MethodTunnel: "tunnel", MethodNAT: "nat"}

// ErrBadMethod is returned for a forwarding method that is not one of dr, tunnel or nat.
var ErrBadMethod = errors.New("unknown forwarding method")

// Valid reports whether m is one of the methods (the zero value is not).
func (m Method) Valid() bool { return m > 0 && m < numMethods }

// String returns the configuration name of the method: dr, tunnel or nat.
func (m Method) String() string {
	if m.Valid() {
		return methodNames[m]
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// ParseMethod parses a configuration name: dr, tunnel or nat.
func ParseMethod(s string) (Method, error) {
	for m, n := range methodNames {
		if n != "" && n == s {
			return Method(m), nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not one of %s", ErrBadMethod, s, strings.Join(methodNames[1:], ", "))
}

// MarshalText returns the configuration name (JSON and YAML write it as a string).
func (m Method) MarshalText() ([]byte, error) {
	if !m.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrBadMethod, uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText parses a configuration name with ParseMethod.
func (m *Method) UnmarshalText(b []byte) error {
	v, err := ParseMethod(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
