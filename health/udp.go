package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// udpMaxReply is the largest reply datagram a UDP check reads.
const udpMaxReply = 64 << 10

// udpResends is how many times a UDP check sends its payload within one timeout: a lost
// datagram alone should not fail a probe.
const udpResends = 3

// UDP sends a payload to Target and is healthy on any reply datagram, or, with Expect set,
// on one that contains Expect. An ICMP port unreachable (the kernel reports ECONNREFUSED on
// the connected socket) fails the probe at once; silence fails it at the timeout. The
// payload is sent again at a third and two thirds of the timeout, so one lost datagram does
// not fail the probe.
type UDP struct {
	// Target is the address and port the payload goes to.
	Target netip.AddrPort
	// Payload is the datagram sent; it may be empty (a zero-length datagram).
	Payload []byte
	// Expect, when set, must occur in a reply for the probe to pass; other replies are
	// ignored until the timeout.
	Expect []byte
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check sends the payload and waits for a matching reply.
func (c *UDP) Check(ctx context.Context) (Report, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return Report{}, fmt.Errorf("%s: %w: target needs an address and a port", c, ErrConfig)
	}
	conn, err := c.Dialer.dialUDP(ctx, c.Target)
	if err != nil {
		return Report{}, timeoutErr(ctx, "udp dial", err)
	}
	defer conn.Close()
	defer deadline(ctx, conn)()
	if _, err := conn.Write(c.Payload); err != nil {
		return Report{}, timeoutErr(ctx, "udp send", err)
	}
	resend := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		resend = time.Until(dl) / udpResends
	}
	buf := make([]byte, udpMaxReply)
	var mismatched int
	for sent := 1; ; {
		if ctx.Err() != nil {
			return Report{}, timeoutErr(ctx, "udp read", ctx.Err())
		}
		if resend > 0 && sent < udpResends {
			dl, _ := ctx.Deadline()
			_ = conn.SetReadDeadline(minTime(time.Now().Add(resend), dl))
		} else if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetReadDeadline(dl)
		}
		n, err := conn.Read(buf)
		if err == nil {
			if c.Expect == nil || bytes.Contains(buf[:n], c.Expect) {
				return Report{}, nil
			}
			mismatched++
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return Report{}, fmt.Errorf("udp %s: port unreachable: %w", c.Target, err)
		}
		if ctx.Err() == nil && sent < udpResends && isNetTimeout(err) {
			sent++
			if _, err := conn.Write(c.Payload); err != nil {
				return Report{}, timeoutErr(ctx, "udp send", err)
			}
			continue
		}
		if mismatched > 0 && isNetTimeout(err) {
			return Report{}, fmt.Errorf("%w: %d replies from %s without %q", ErrReply, mismatched, c.Target, c.Expect)
		}
		return Report{}, timeoutErr(ctx, "udp read", err)
	}
}

// String returns "udp ADDR:PORT".
func (c *UDP) String() string { return "udp " + c.Target.String() }

// isNetTimeout reports a network timeout (a deadline reached).
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func minTime(a, b time.Time) time.Time {
	if b.IsZero() || a.Before(b) {
		return a
	}
	return b
}
