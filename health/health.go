package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// State is the health of one check's target.
type State uint8

// States. A check starts in its Check.Initial state (StateUnknown unless told otherwise).
const (
	// StateUnknown: no probe has completed yet. The first result moves the check to StateUp
	// or StateDown at once (Seesaw's behaviour); control should not send new flows to it.
	StateUnknown State = iota
	// StateDown: Fall consecutive probes failed (or the first one did).
	StateDown
	// StateUp: Rise consecutive probes succeeded (or the first one did).
	StateUp
)

// String returns "unknown", "down" or "up".
func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateDown:
		return "down"
	case StateUp:
		return "up"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Errors returned by checkers and by the Monitor. Checker errors wrap one of these (or a
// network error such as syscall.ECONNREFUSED) so callers can tell failures apart with errors.Is.
var (
	// ErrTimeout: the probe got no (complete) answer before its timeout.
	ErrTimeout = errors.New("health: probe timed out")
	// ErrStatus: an HTTP(S) probe got a status code other than the expected one.
	ErrStatus = errors.New("health: unexpected http status")
	// ErrBody: an HTTP(S) probe's body (its first MaxBody bytes) lacks the expected substring.
	ErrBody = errors.New("health: expected body text not found")
	// ErrReply: a UDP, DNS, SMTP or TLS probe got an answer, but not the expected one.
	ErrReply = errors.New("health: unexpected reply")
	// ErrExit: an exec probe's program exited with a failing status or was killed.
	ErrExit = errors.New("health: check program failed")
	// ErrConfig: a check or checker is misconfigured (bad address, interval, path, ...).
	ErrConfig = errors.New("health: invalid configuration")
	// ErrExists: Monitor.Add with an ID that is already running.
	ErrExists = errors.New("health: check already exists")
	// ErrNotFound: Monitor.Remove, Replace or Status with an unknown ID.
	ErrNotFound = errors.New("health: no such check")
	// ErrClosed: the Monitor was closed (or its context cancelled).
	ErrClosed = errors.New("health: monitor closed")
)

// Report is what a successful probe may tell beyond "alive".
type Report struct {
	// Load is a load figure the backend reported (for the least-load scheduler); valid only
	// when HasLoad. The HTTP checker reads it from a response header (X-Load by default) as a
	// non-negative float; a missing or malformed header leaves HasLoad false.
	Load    float64
	HasLoad bool
	// Weight is the backend weight the probe asks for; valid only when HasWeight. The exec
	// checker with DynamicWeight sets it from the program's exit code (keepalived's
	// misc_dynamic: exit code 2-255 means healthy with weight code-2).
	Weight    uint32
	HasWeight bool
}

// Checker runs one probe. Implementations must return as soon as ctx is done (the Monitor
// gives every probe a context with the check's timeout), must create their sockets on the
// calling goroutine (so a namespace hook that switches the calling thread applies to them),
// must hold no connection open between probes, and must be safe for concurrent use.
// A nil error means the target is healthy.
type Checker interface {
	Check(ctx context.Context) (Report, error)
	// String names the probe for logs and the API, e.g. "http 198.18.0.11:80/healthz".
	String() string
}

// Result is one completed probe, as kept in a check's history and passed to OnResult.
type Result struct {
	Time    time.Time     // when the probe started
	OK      bool          // the checker returned nil
	Latency time.Duration // from start to the checker's return
	Err     string        // the checker's error text; empty when OK
	Load    float64       // the reported load figure, valid when HasLoad
	HasLoad bool
	// Weight is the weight the probe asked for (exec checks with DynamicWeight), valid when
	// HasWeight.
	Weight    uint32
	HasWeight bool
}

// timeoutErr maps context expiry and network timeouts to ErrTimeout and cancellation to
// context.Canceled, keeping the original error in the chain, and wraps everything else with
// the operation's name.
func timeoutErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// Cancellation shows up as an i/o timeout (the deadline is set to the past).
		return fmt.Errorf("%s: %w (%w)", op, context.Canceled, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w (%w)", op, ErrTimeout, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
