package connsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/xlb-dev/xlb/sched"
)

// The message format, version 1 (all integers big-endian):
//
//	 0  magic "XLBS"
//	 4  version (1)
//	 5  flags (0; a receiver refuses others)
//	 6  record count n
//	 8  sender id: random, drawn by each sending process at start
//	16  sequence number: 1, 2, ... per sender id
//	24  sent: the sender's wall clock when it sealed the message (Unix ns)
//	32  oldest: the wall clock when the oldest record may have been queued (Unix ns)
//	40  n records of RecordSize bytes
//	    HMAC-SHA256 of everything before it, keyed with the shared key (MACSize bytes)
//
// A record:
//
//	 0  key source address (16; IPv4 in the first 4, the rest zero)
//	16  key destination address (16)
//	32  source port, 34 destination port
//	36  protocol
//	37  flags: bit 0 the key is IPv6, bit 1 the backend is IPv6; others 0
//	38  state (sched.ConnState; 0 in a template)
//	39  kind: 0 a connection, 1 a removal, 2 a persistence template (Kind); a receiver
//	    skips (and counts) a record of a kind it does not know
//	40  backend address (16), 56 backend port, 58..63 zero
//
// A removal names the flow that the sender's table dropped and its last state (backend
// zero); a
// template's key is the client prefix (source address masked to the service's persistence
// prefix, source port 0) and the service (destination address, port and protocol as the
// service is configured: port 0 for an all-ports service), its backend the one the prefix
// is remembered on.
const (
	Version    = 1
	HeaderSize = 40
	RecordSize = 64
	MACSize    = sha256.Size
	// MaxRecords is the most records a message may hold (a 64 KiB UDP datagram).
	MaxRecords = (65507 - HeaderSize - MACSize) / RecordSize
	// MinKeySize is the shortest key Seal and Open accept (128 bits).
	MinKeySize = 16
)

var magic = [4]byte{'X', 'L', 'B', 'S'}

// Errors of Open, by the reason a message is dropped; test with errors.Is.
var (
	ErrShort     = errors.New("connsync: message too short")
	ErrMagic     = errors.New("connsync: not a sync message")
	ErrVersion   = errors.New("connsync: unknown version or flags")
	ErrLength    = errors.New("connsync: length does not match the record count")
	ErrOversized = errors.New("connsync: message larger than allowed")
	ErrAuth      = errors.New("connsync: authentication failed")
	ErrRecord    = errors.New("connsync: malformed record")
	ErrReplay    = errors.New("connsync: replayed or too old sequence number")
	ErrStale     = errors.New("connsync: timestamp outside the allowed skew")
	ErrKey       = errors.New("connsync: key too short")
	// ErrKind is ParseRecord's error for a well-framed record of a kind this version does
	// not know: the receiver skips that record and applies the rest.
	ErrKind = errors.New("connsync: unknown record kind")
)

// Kind is what a Record says.
type Kind uint8

// Record kinds.
const (
	KindConn     Kind = iota // a connection: new, changed or refreshed
	KindRemove               // the sender's table dropped the connection
	KindTemplate             // a client prefix's persistence (Key: prefix and service)
	NumKinds
)

var kindNames = [NumKinds]string{"conn", "remove", "template"}

// String returns the kind's name (a metric label).
func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Header is a message's header.
type Header struct {
	Count  int
	Sender uint64
	Seq    uint64
	Sent   int64 // Unix ns
	Oldest int64 // Unix ns
}

// Size returns the length of a message of n records.
func Size(n int) int { return HeaderSize + n*RecordSize + MACSize }

// Sealer builds authenticated messages. Not safe for concurrent use.
type Sealer struct {
	mac hash.Hash
	sum [MACSize]byte
}

// NewSealer returns a Sealer (and Opener) for key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeySize)
	}
	return &Sealer{mac: hmac.New(sha256.New, key)}, nil
}

// Seal writes header h and recs into buf (which must hold Size(len(recs)) bytes) and
// returns the message. It does not allocate.
func (s *Sealer) Seal(buf []byte, h *Header, recs []Record) []byte {
	n := Size(len(recs))
	b := buf[:n]
	copy(b[0:4], magic[:])
	b[4], b[5] = Version, 0
	binary.BigEndian.PutUint16(b[6:], uint16(len(recs)))
	binary.BigEndian.PutUint64(b[8:], h.Sender)
	binary.BigEndian.PutUint64(b[16:], h.Seq)
	binary.BigEndian.PutUint64(b[24:], uint64(h.Sent))
	binary.BigEndian.PutUint64(b[32:], uint64(h.Oldest))
	for i := range recs {
		putRecord(b[HeaderSize+i*RecordSize:], &recs[i])
	}
	end := n - MACSize
	s.mac.Reset()
	s.mac.Write(b[:end])
	s.mac.Sum(b[end:end])
	return b
}

// Open checks message b (its size against max bytes, its framing, then its MAC in
// constant time) and returns its header and the records' bytes (decode each with
// ParseRecord). Nothing of an unauthenticated message is trusted beyond its length. It
// does not allocate.
func (s *Sealer) Open(b []byte, max int, h *Header) ([]byte, error) {
	if len(b) > max {
		return nil, ErrOversized
	}
	if len(b) < Size(0) {
		return nil, ErrShort
	}
	if [4]byte(b[0:4]) != magic {
		return nil, ErrMagic
	}
	if b[4] != Version || b[5] != 0 {
		return nil, ErrVersion
	}
	n := int(binary.BigEndian.Uint16(b[6:]))
	if n > MaxRecords || len(b) != Size(n) {
		return nil, ErrLength
	}
	end := len(b) - MACSize
	s.mac.Reset()
	s.mac.Write(b[:end])
	if !hmac.Equal(s.mac.Sum(s.sum[:0]), b[end:]) {
		return nil, ErrAuth
	}
	*h = Header{Count: n, Sender: binary.BigEndian.Uint64(b[8:]), Seq: binary.BigEndian.Uint64(b[16:]),
		Sent: int64(binary.BigEndian.Uint64(b[24:])), Oldest: int64(binary.BigEndian.Uint64(b[32:]))}
	return b[HeaderSize:end], nil
}

func putRecord(b []byte, r *Record) {
	b = b[:RecordSize]
	copy(b[0:16], r.Key.Src[:])
	copy(b[16:32], r.Key.Dst[:])
	binary.BigEndian.PutUint16(b[32:], r.Key.SrcPort)
	binary.BigEndian.PutUint16(b[34:], r.Key.DstPort)
	b[36] = r.Key.Proto
	var f byte
	if r.Key.V6 {
		f |= 1
	}
	if r.BackendV6 {
		f |= 2
	}
	b[37], b[38], b[39] = f, byte(r.State), byte(r.Kind)
	copy(b[40:56], r.Backend[:])
	binary.BigEndian.PutUint16(b[56:], r.BackendPort)
	clear(b[58:64])
}

// ParseRecord decodes the i-th record of recs (as Open returned them) into r, checking
// that it is well formed: known flags and state, zero padding, IPv4 addresses with zero
// tails, a template's state and source port 0. A record of an unknown kind is ErrKind (r
// is then not filled in).
func ParseRecord(recs []byte, i int, r *Record) error {
	if i < 0 || (i+1)*RecordSize > len(recs) {
		return ErrRecord
	}
	b := recs[i*RecordSize : (i+1)*RecordSize]
	f, kind := b[37], Kind(b[39])
	if f&^3 != 0 || int(b[38]) >= sched.NumConnStates || [6]byte(b[58:64]) != [6]byte{} {
		return ErrRecord
	}
	if kind >= NumKinds {
		return ErrKind
	}
	if kind == KindTemplate && (b[38] != 0 || b[32] != 0 || b[33] != 0) {
		return ErrRecord
	}
	*r = Record{Kind: kind, State: sched.ConnState(b[38]), BackendPort: binary.BigEndian.Uint16(b[56:]),
		BackendV6: f&2 != 0}
	r.Key.Src, r.Key.Dst = [16]byte(b[0:16]), [16]byte(b[16:32])
	r.Key.SrcPort, r.Key.DstPort = binary.BigEndian.Uint16(b[32:]), binary.BigEndian.Uint16(b[34:])
	r.Key.Proto, r.Key.V6 = b[36], f&1 != 0
	r.Backend = [16]byte(b[40:56])
	if !r.Key.V6 && ([12]byte(r.Key.Src[4:]) != [12]byte{} || [12]byte(r.Key.Dst[4:]) != [12]byte{}) ||
		!r.BackendV6 && [12]byte(r.Backend[4:]) != [12]byte{} {
		return ErrRecord
	}
	return nil
}
