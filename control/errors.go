package control

import (
	"errors"
	"fmt"
)

// Runtime errors.
var (
	// ErrRestartRequired refuses a reload that changes something only a
	// restart can apply (the interfaces, their modes and cores, the API
	// listener).
	ErrRestartRequired = errors.New("restart required")
	// ErrNotFound is returned for an unknown service or backend.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned after the controller is closed.
	ErrClosed = errors.New("controller closed")
	// ErrUnauthorized is the API's answer without a valid bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTokenRequired refuses an API that listens beyond loopback
	// without a token.
	ErrTokenRequired = errors.New("api: a token is required when listening beyond loopback")
)

// errNoVRRP is the API's answer when no vrrp section is configured.
var errNoVRRP = fmt.Errorf("vrrp: %w: no vrrp section in the configuration", ErrNotFound)
