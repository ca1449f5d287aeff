package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// DNS asks Target one question (keepalived's DNS_CHECK): Name of type Type over UDP, again
// over TCP when the reply is truncated (or over TCP only, with TCP set). It is healthy when
// the reply's rcode is Rcode and every string in Answers is the data of some answer record
// ("198.18.0.10" for an A record; names fully qualified, "10 mx.example." for an MX). An ICMP
// port unreachable fails the probe at once.
type DNS struct {
	// Target is the server's address and port (53 usually).
	Target netip.AddrPort
	// Name is the name asked for; a missing final dot is added.
	Name string
	// Type is the query type (dns.TypeA, ...); 0 means A.
	Type uint16
	// Rcode is the expected response code (dns.RcodeSuccess, the zero value, or e.g.
	// dns.RcodeNameError for a name that must not exist).
	Rcode int
	// Answers, when set, must each equal the data of one answer record of the reply (the
	// record's text after its header: "198.18.0.10", "10 mx.example.").
	Answers []string
	// TCP asks over TCP from the start.
	TCP bool
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check asks the question and checks the reply.
func (c *DNS) Check(ctx context.Context) (Report, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 || c.Name == "" {
		return Report{}, fmt.Errorf("%s: %w: needs an address, a port and a name", c, ErrConfig)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(c.Name), c.qtype())
	q.RecursionDesired = true
	r, err := c.exchange(ctx, q, c.TCP)
	if err == nil && r.Truncated && !c.TCP {
		r, err = c.exchange(ctx, q, true)
	}
	if err != nil {
		return Report{}, err
	}
	if r.Rcode != c.Rcode {
		return Report{}, fmt.Errorf("%w: dns %s %s: rcode %s, want %s", ErrReply, c.Name, dns.TypeToString[c.qtype()],
			rcodeName(r.Rcode), rcodeName(c.Rcode))
	}
	have := make([]string, 0, len(r.Answer))
	for _, rr := range r.Answer {
		have = append(have, rdata(rr))
	}
	for _, want := range c.Answers {
		if !slices.Contains(have, want) {
			return Report{}, fmt.Errorf("%w: dns %s: %q not among the answers %q", ErrReply, c.Name, want, have)
		}
	}
	return Report{}, nil
}

// exchange sends q over a fresh socket made by the Dialer and reads the reply.
func (c *DNS) exchange(ctx context.Context, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	var (
		conn net.Conn
		err  error
	)
	network := "udp"
	if tcp {
		network = "tcp"
		conn, err = c.Dialer.dialTCP(ctx, c.Target)
	} else {
		conn, err = c.Dialer.dialUDP(ctx, c.Target)
	}
	if err != nil {
		return nil, timeoutErr(ctx, "dns "+network+" dial", err)
	}
	defer conn.Close()
	defer deadline(ctx, conn)()
	cl := &dns.Client{Net: network}
	r, _, err := cl.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, timeoutErr(ctx, "dns "+network, err)
	}
	return r, nil
}

func (c *DNS) qtype() uint16 {
	if c.Type == 0 {
		return dns.TypeA
	}
	return c.Type
}

// rdata is a record's text without its header.
func rdata(rr dns.RR) string {
	return strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String()))
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprint(rc)
}

// ParseDNSType maps a query type name ("A", "aaaa", "MX", ...) to its number.
func ParseDNSType(s string) (uint16, error) {
	if t, ok := dns.StringToType[strings.ToUpper(s)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("%w: unknown dns type %q", ErrConfig, s)
}

// ParseDNSRcode maps a response code name ("NOERROR", "nxdomain", ...) to its number.
func ParseDNSRcode(s string) (int, error) {
	if rc, ok := dns.StringToRcode[strings.ToUpper(s)]; ok {
		return rc, nil
	}
	return 0, fmt.Errorf("%w: unknown dns rcode %q", ErrConfig, s)
}

// String returns "dns ADDR:PORT NAME TYPE".
func (c *DNS) String() string {
	return "dns " + c.Target.String() + " " + c.Name + " " + dns.TypeToString[c.qtype()]
}
