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

	pos pos
}

func (q *QUIC) setPos(p pos) { q.pos = p }

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
func (q *QUIC) LB() (*encap.QUICLB, error) {
	c := encap.QUICLBConfig{ConfigID: q.ConfigRotation, ServerIDLen: q.ServerIDLen, NonceLen: q.CIDLen - 1 - q.ServerIDLen}
	if q.Mode == QUICEncrypted {
		c.Key = q.Key
	}
	lb, err := encap.NewQUICLB(c)
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
	if s.QUIC != nil && s.QUIC.Mode == 0 {
		s.QUIC.Mode = QUICPlaintext
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
	qp := q.pos
	if qp.line == 0 {
		qp.line = s.pos.at("quic")
	}
	if s.Protocol != UDP {
		e.add(s.pos.at("protocol"), p+".protocol", ErrValue, "quic needs protocol udp")
	}
	if q.ServerIDLen < 1 || q.ServerIDLen > 8 {
		e.add(qp.at("server_id_len"), p+".quic.server_id_len", ErrValue, "server_id_len %d (want 1..8)", q.ServerIDLen)
	} else if q.CIDLen < q.ServerIDLen+5 || q.CIDLen > encap.MaxQUICConnIDLen {
		e.add(qp.at("cid_len"), p+".quic.cid_len", ErrValue,
			"cid_len %d (want %d..%d: the first octet, the server ID and a nonce of at least 4 bytes)", q.CIDLen, q.ServerIDLen+5, encap.MaxQUICConnIDLen)
	}
	if q.ConfigRotation >= encap.QUICLBUnroutable {
		e.add(qp.at("config_rotation"), p+".quic.config_rotation", ErrValue, "config_rotation %d (want 0..6; 7 marks unroutable IDs)", q.ConfigRotation)
	}
	if !valid(e, qp.at("mode"), p+".quic.mode", q.Mode) {
		return
	}
	switch {
	case q.Mode == QUICEncrypted && len(q.Key) != 16:
		e.add(qp.at("key"), p+".quic.key", ErrValue, "mode encrypted needs a key of 16 bytes (32 hex digits), got %d", len(q.Key))
	case q.Mode == QUICPlaintext && q.Key != nil:
		e.add(qp.at("key"), p+".quic.key", ErrValue, "a key is only used by mode encrypted")
	}
}
