package config

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/xlb-dev/xlb/encap"
)

// Encap is a tunnel service's encapsulation: ipip (the default: IPIP, IP6IP6, 4in6, 6in4),
// gue (GUE with its 4-byte header) or fou (the inner packet right after the UDP header, the
// layout Katran calls GUE). GUE and FOU take the outer UDP source port from the flow's hash,
// so a backend's NIC spreads the tunnelled flows over its queues.
type Encap = encap.TunnelEncap

// The encapsulations.
const (
	EncapIPIP = encap.EncapIPIP
	EncapGUE  = encap.EncapGUE
	EncapFOU  = encap.EncapFOU
)

// QUIC routes a UDP service's QUIC packets by the server ID that QUIC-LB servers
// (draft-ietf-quic-load-balancers) put into their connection IDs: a packet whose destination
// connection ID names a backend's server_id goes to that backend while it is up, whatever
// the client's address, so a client that migrates keeps its server. Other packets (a client's
// first Initial, unknown IDs, a backend that is down) take the scheduler's 4-tuple path.
// Every server must issue its connection IDs with the same settings.
type QUIC struct {
	// ServerIDLen is the server ID length in bytes, 1..8.
	ServerIDLen int `yaml:"server_id_len"`
	// CIDLen is the length of the servers' connection IDs: the first octet, the server ID
	// and a nonce of at least 4 bytes; at most 20.
	CIDLen int `yaml:"cid_len"`
	// ConfigRotation is the configuration's codepoint in the connection IDs' three most
	// significant bits, 0..6. Default 0.
	ConfigRotation uint8 `yaml:"config_rotation"`
	// Mode is plaintext (server IDs readable by anyone) or encrypted (AES-128 with Key).
	// Default plaintext.
	Mode QUICMode `yaml:"mode"`
	// Key is the 16-byte AES key of the encrypted mode, as 32 hex digits.
	Key HexBytes `yaml:"key"`
	// Previous are configurations the servers may still issue IDs with during a rotation
	// (a new key or length): each with a config_rotation of its own and the same
	// server_id_len. Optional.
	Previous []QUICPrevious `yaml:"previous"`

	pos pos
}

// QUICPrevious is a configuration still routed during a rotation (see QUIC's fields).
type QUICPrevious struct {
	CIDLen         int      `yaml:"cid_len"`
	ConfigRotation uint8    `yaml:"config_rotation"`
	Mode           QUICMode `yaml:"mode"`
	Key            HexBytes `yaml:"key"`

	pos pos
}

func (q *QUIC) setPos(p pos)         { q.pos = p }
func (q *QUICPrevious) setPos(p pos) { q.pos = p }

// quicLB is one configuration's fields, whichever struct holds them.
type quicLB struct {
	sidLen, cidLen int
	cr             uint8
	mode           QUICMode
	key            HexBytes
	pos            pos
}

func (q *QUIC) own() quicLB {
	return quicLB{q.ServerIDLen, q.CIDLen, q.ConfigRotation, q.Mode, q.Key, q.pos}
}

func (q *QUIC) previous(i int) quicLB {
	v := &q.Previous[i]
	return quicLB{q.ServerIDLen, v.CIDLen, v.ConfigRotation, v.Mode, v.Key, v.pos}
}

// QUICMode is plaintext or encrypted.
type QUICMode uint8

// The QUIC-LB modes.
const (
	QUICPlaintext QUICMode = iota + 1
	QUICEncrypted
	numQUICModes
)

var quicModeNames = [numQUICModes]string{"", "plaintext", "encrypted"}

// ParseQUICMode parses plaintext or encrypted.
func ParseQUICMode(s string) (QUICMode, error) { return parseNamed[QUICMode](quicModeNames[:], s) }

// Valid reports whether m is a mode.
func (m QUICMode) Valid() bool { return m > 0 && m < numQUICModes }

func (m QUICMode) String() string { return nameOf("mode", quicModeNames[:], m) }

// MarshalText returns the mode's name.
func (m QUICMode) MarshalText() ([]byte, error) { return marshal(m) }

// UnmarshalText parses a mode's name.
func (m *QUICMode) UnmarshalText(b []byte) error { return unmarshal(m, ParseQUICMode, b) }

// HexBytes is an opaque byte string written as hex digits (a leading 0x is allowed): a QUIC
// server ID or key.
type HexBytes []byte

// String returns the hex digits.
func (h HexBytes) String() string { return hex.EncodeToString(h) }

// MarshalText returns the hex digits.
func (h HexBytes) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses hex digits.
func (h *HexBytes) UnmarshalText(b []byte) error {
	s := strings.TrimPrefix(strings.TrimPrefix(string(b), "0x"), "0X")
	v, err := hex.DecodeString(s)
	if err != nil || len(v) == 0 {
		return fmt.Errorf("%w: %q is not a string of hex digits", ErrValue, b)
	}
	*h = v
	return nil
}

// LB builds the QUIC-LB codec of a validated configuration.
func (q *QUIC) LB() (*encap.QUICLB, error) { return q.own().codec() }

// PreviousLBs builds the codecs of the previous configurations.
func (q *QUIC) PreviousLBs() ([]*encap.QUICLB, error) {
	var out []*encap.QUICLB
	for i := range q.Previous {
		lb, err := q.previous(i).codec()
		if err != nil {
			return nil, fmt.Errorf("previous[%d]: %w", i, err)
		}
		out = append(out, lb)
	}
	return out, nil
}

func (c quicLB) codec() (*encap.QUICLB, error) {
	lc := encap.QUICLBConfig{ConfigID: c.cr, ServerIDLen: c.sidLen, NonceLen: c.cidLen - 1 - c.sidLen}
	if c.mode == QUICEncrypted {
		lc.Key = c.key
	}
	lb, err := encap.NewQUICLB(lc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrValue, err)
	}
	return lb, nil
}

// normalizeEncapQUIC fills the defaults of encap, encap_port and quic.
func (s *Service) normalizeEncapQUIC() {
	if (s.Encap == EncapGUE || s.Encap == EncapFOU) && s.EncapPort == 0 {
		s.EncapPort = encap.DefaultGUEPort
	}
	if s.QUIC != nil {
		s.QUIC.Mode = orDefault(s.QUIC.Mode, QUICPlaintext)
		for i := range s.QUIC.Previous {
			s.QUIC.Previous[i].Mode = orDefault(s.QUIC.Previous[i].Mode, QUICPlaintext)
		}
	}
}

// validateEncapQUIC checks encap, encap_port, quic and the backends' server_id.
func (s *Service) validateEncapQUIC(e *errs, p string, methodOK bool) {
	if !valid(e, s.pos.at("encap"), p+".encap", s.Encap) {
		return
	}
	if methodOK && s.Encap != EncapIPIP && s.Method != MethodTunnel {
		e.add(s.pos.at("encap"), p+".encap", ErrValue, "encap %s is only used by method tunnel", s.Encap)
	}
	if s.EncapPort != 0 && s.Encap == EncapIPIP {
		e.add(s.pos.at("encap_port"), p+".encap_port", ErrValue, "encap_port is only used by encap gue or fou")
	}
	q := s.QUIC
	ids := map[string]int{}
	for _, group := range []struct {
		field string
		list  []Backend
	}{{"backends", s.Backends}, {"fallback", s.Fallback}} {
		for j := range group.list {
			b := &group.list[j]
			if b.ServerID == nil {
				continue
			}
			bp := fmt.Sprintf("%s.%s[%d].server_id", p, group.field, j)
			switch {
			case q == nil:
				e.add(b.pos.at("server_id"), bp, ErrValue, "server_id is only used with quic")
			case q.ServerIDLen > 0 && len(b.ServerID) != q.ServerIDLen:
				e.add(b.pos.at("server_id"), bp, ErrValue, "server_id %s has %d bytes, quic.server_id_len is %d", b.ServerID, len(b.ServerID), q.ServerIDLen)
			default:
				if prev, dup := ids[string(b.ServerID)]; dup {
					e.add(b.pos.at("server_id"), bp, ErrDuplicate, "server_id %s already used on line %d", b.ServerID, prev)
				}
				ids[string(b.ServerID)] = b.pos.at("server_id")
			}
		}
	}
	if q == nil {
		return
	}
	if s.Protocol != UDP {
		e.add(s.pos.at("protocol"), p+".protocol", ErrValue, "quic needs protocol udp")
	}
	own := q.own()
	if own.pos.line == 0 {
		own.pos.line = s.pos.at("quic")
	}
	if q.ServerIDLen < 1 || q.ServerIDLen > 8 {
		e.add(own.pos.at("server_id_len"), p+".quic.server_id_len", ErrValue, "server_id_len %d (want 1..8)", q.ServerIDLen)
	} else {
		own.validate(e, p+".quic")
	}
	used := map[uint8]int{q.ConfigRotation: own.pos.at("config_rotation")}
	for i := range q.Previous {
		c := q.previous(i)
		pp := fmt.Sprintf("%s.quic.previous[%d]", p, i)
		if q.ServerIDLen >= 1 && q.ServerIDLen <= 8 {
			c.validate(e, pp)
		}
		if prev, dup := used[c.cr]; dup {
			e.add(c.pos.at("config_rotation"), pp+".config_rotation", ErrDuplicate, "config_rotation %d already used on line %d", c.cr, prev)
		}
		used[c.cr] = c.pos.at("config_rotation")
	}
}

// validate checks one configuration's lengths, codepoint, mode and key (path p).
func (c quicLB) validate(e *errs, p string) {
	if c.cidLen < c.sidLen+5 || c.cidLen > encap.MaxQUICConnIDLen {
		e.add(c.pos.at("cid_len"), p+".cid_len", ErrValue,
			"cid_len %d (want %d..%d: the first octet, the server ID and a nonce of at least 4 bytes)", c.cidLen, c.sidLen+5, encap.MaxQUICConnIDLen)
	}
	if c.cr >= encap.QUICLBUnroutable {
		e.add(c.pos.at("config_rotation"), p+".config_rotation", ErrValue, "config_rotation %d (want 0..6; 7 marks unroutable IDs)", c.cr)
	}
	if !valid(e, c.pos.at("mode"), p+".mode", c.mode) {
		return
	}
	switch {
	case c.mode == QUICEncrypted && len(c.key) != 16:
		e.add(c.pos.at("key"), p+".key", ErrValue, "mode encrypted needs a key of 16 bytes (32 hex digits), got %d", len(c.key))
	case c.mode == QUICPlaintext && c.key != nil:
		e.add(c.pos.at("key"), p+".key", ErrValue, "a key is only used by mode encrypted")
	}
}
