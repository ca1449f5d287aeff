package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"net/textproto"
)

// smtpMaxReply bounds the bytes an SMTP check reads over one connection.
const smtpMaxReply = 64 << 10

// DefaultHelo is the name an SMTP check greets with when Helo is empty.
const DefaultHelo = "xlb-health"

// SMTP checks a mail server the way keepalived's SMTP_CHECK does: it reads the 220 banner,
// sends EHLO and expects 250, then sends QUIT and expects 221. Replies may span several lines
// ("250-..."); at most 64 KiB is read in all.
type SMTP struct {
	// Target is the server's address and port (25 usually).
	Target netip.AddrPort
	// Helo is the name sent with EHLO; "" means DefaultHelo.
	Helo string
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check runs the banner, EHLO and QUIT exchange.
func (c *SMTP) Check(ctx context.Context) (Report, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return Report{}, fmt.Errorf("%s: %w: target needs an address and a port", c, ErrConfig)
	}
	conn, err := c.Dialer.dialTCP(ctx, c.Target)
	if err != nil {
		return Report{}, timeoutErr(ctx, "smtp connect", err)
	}
	defer conn.Close()
	defer deadline(ctx, conn)()
	r := textproto.NewReader(bufio.NewReader(io.LimitReader(conn, smtpMaxReply)))
	w := textproto.NewWriter(bufio.NewWriter(conn))
	helo := c.Helo
	if helo == "" {
		helo = DefaultHelo
	}
	steps := []struct {
		send string
		code int
	}{{"", 220}, {"EHLO " + helo, 250}, {"QUIT", 221}}
	for _, st := range steps {
		if st.send != "" {
			if err := w.PrintfLine("%s", st.send); err != nil {
				return Report{}, timeoutErr(ctx, "smtp write", err)
			}
		}
		if _, _, err := r.ReadResponse(st.code); err != nil {
			if _, ok := err.(*textproto.Error); ok {
				return Report{}, fmt.Errorf("%w: smtp %s: %w", ErrReply, orBanner(st.send), err)
			}
			return Report{}, timeoutErr(ctx, "smtp read", err)
		}
	}
	return Report{}, nil
}

func orBanner(s string) string {
	if s == "" {
		return "banner"
	}
	return s
}

// String returns "smtp ADDR:PORT".
func (c *SMTP) String() string { return "smtp " + c.Target.String() }
