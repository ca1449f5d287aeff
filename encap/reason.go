package encap

// Reason is the outcome of a parse or a forwarding step: OK, ReplyICMP (the frame was turned
// into an ICMP error for the sender, transmit it back), or why the packet must be dropped.
// Reasons are small consecutive integers, so a worker can count them in a [NumReasons]uint64.
type Reason uint8

const (
	// OK: parsed, or rewritten and ready to transmit to the backend.
	OK Reason = iota
	// ReplyICMP: the frame now holds an ICMP "fragmentation needed" or ICMPv6 "packet too
	// big" for the original sender, with the MAC addresses swapped: transmit it back out of the
	// interface it came in on.
	ReplyICMP
	// Truncated: the frame ends inside a header.
	Truncated
	// UnknownEtherType: neither IPv4 nor IPv6 (after at most one 802.1Q tag).
	UnknownEtherType
	// BadVersion: the IP version nibble disagrees with the EtherType.
	BadVersion
	// BadIHL: IPv4 header length below 20 bytes.
	BadIHL
	// BadLength: an IP or UDP length field disagrees with the frame or with another length.
	BadLength
	// TooManyExtHeaders: more IPv6 extension headers than MaxExtHeaders.
	TooManyExtHeaders
	// BadL4Header: a TCP data offset below 5 or an L4 header that overruns the IP packet.
	BadL4Header
	// BadICMPQuote: an ICMP error whose quoted packet is too short or malformed to find its flow.
	BadICMPQuote
	// NoHeadroom: not enough room before the packet (or after it, in the buffer) for the rewrite.
	NoHeadroom
	// TooBig: the encapsulated packet would exceed the egress MTU and no ICMP reply may be sent
	// (IPv4 without DF, a non-first fragment, or an ICMP error itself).
	TooBig
	// NoTunnel: Encap on a Tunnel not built by NewTunnel.
	NoTunnel
	// FamilyMismatch: an address of the other IP family was given for this packet (or the
	// packet was not parsed).
	FamilyMismatch

	// NumReasons is the number of Reason values, for sizing counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:                "ok",
	ReplyICMP:         "reply_icmp",
	Truncated:         "truncated",
	UnknownEtherType:  "unknown_ethertype",
	BadVersion:        "bad_ip_version",
	BadIHL:            "bad_ihl",
	BadLength:         "bad_length",
	TooManyExtHeaders: "too_many_ext_headers",
	BadL4Header:       "bad_l4_header",
	BadICMPQuote:      "bad_icmp_quote",
	NoHeadroom:        "no_headroom",
	TooBig:            "too_big",
	NoTunnel:          "no_tunnel",
	FamilyMismatch:    "family_mismatch",
}

// String returns a short snake_case name, usable as a metric label.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown_reason"
}

// Drop reports whether the packet must be dropped (anything but OK and ReplyICMP).
func (r Reason) Drop() bool { return r > ReplyICMP }
