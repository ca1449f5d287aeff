package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
)

// QUIC-LB (draft-ietf-quic-load-balancers): servers put a server ID into the connection IDs
// they issue, so that a load balancer can route a packet by its destination connection ID
// whatever the client's address. A connection ID is
//
//	| first octet: config rotation (3 bits), length or random (5 bits) | server ID | nonce |
//
// either in plaintext or, with a 16-byte key, encrypted with AES-128-ECB: one block
// operation when server ID and nonce are exactly 16 bytes, otherwise a four-round Feistel
// network whose round function is AES on an "expanded" half. The load balancer needs only
// three rounds back when the server ID fits into the left half.

// QUICLBUnroutable is the config rotation codepoint servers without a configuration use:
// such connection IDs never decode.
const QUICLBUnroutable = 7

// ErrQUICLBConfig is wrapped by NewQUICLB and Encode errors.
var ErrQUICLBConfig = errors.New("invalid QUIC-LB configuration")

// QUICLBConfig is one QUIC-LB configuration, shared by the load balancer and its servers.
type QUICLBConfig struct {
	// ConfigID is the config rotation codepoint, 0..6, in the three most significant bits of
	// every connection ID of this configuration.
	ConfigID uint8
	// ServerIDLen (at least 1) and NonceLen (at least 4) are the field lengths in bytes;
	// they sum to at most 19 (QUIC version 1 connection IDs have at most 20 bytes).
	ServerIDLen, NonceLen int
	// Key is nil for plaintext connection IDs, or a 16-byte AES-128 key.
	Key []byte
}

// QUICLB decodes (and, for servers, encodes) the connection IDs of one configuration. Build
// it with NewQUICLB; it is immutable afterwards and safe for concurrent use (decoding needs a
// caller-owned QUICScratch).
type QUICLB struct {
	id           uint8
	sidLen, plen int // server ID length; plaintext length (server ID + nonce)
	half         int // plen/2 rounded up
	odd          bool
	block        cipher.Block // nil: plaintext
}

// QUICScratch is working space for QUICLB.ServerID: keep one per worker (it is not safe for
// concurrent use) so that decoding allocates nothing.
type QUICScratch struct {
	in, out, l, r [16]byte
	sid           [20]byte
}

// NewQUICLB checks c and builds its codec.
func NewQUICLB(c QUICLBConfig) (*QUICLB, error) {
	switch {
	case c.ConfigID >= QUICLBUnroutable:
		return nil, fmt.Errorf("%w: config rotation %d (want 0..6)", ErrQUICLBConfig, c.ConfigID)
	case c.ServerIDLen < 1 || c.ServerIDLen > 15:
		return nil, fmt.Errorf("%w: server ID length %d (want 1..15)", ErrQUICLBConfig, c.ServerIDLen)
	case c.NonceLen < 4:
		return nil, fmt.Errorf("%w: nonce length %d (want at least 4)", ErrQUICLBConfig, c.NonceLen)
	case c.ServerIDLen+c.NonceLen > 19:
		return nil, fmt.Errorf("%w: server ID and nonce are %d bytes (at most 19)", ErrQUICLBConfig, c.ServerIDLen+c.NonceLen)
	}
	q := &QUICLB{id: c.ConfigID, sidLen: c.ServerIDLen, plen: c.ServerIDLen + c.NonceLen}
	q.half = (q.plen + 1) / 2
	q.odd = q.plen%2 == 1
	if c.Key != nil {
		if len(c.Key) != 16 {
			return nil, fmt.Errorf("%w: key of %d bytes (want 16)", ErrQUICLBConfig, len(c.Key))
		}
		b, err := aes.NewCipher(c.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrQUICLBConfig, err)
		}
		q.block = b
	}
	return q, nil
}

// ConnIDLen returns the length of this configuration's connection IDs: the first octet,
// the server ID and the nonce.
func (q *QUICLB) ConnIDLen() int { return 1 + q.plen }

// ConfigID returns the configuration's config rotation codepoint.
func (q *QUICLB) ConfigID() uint8 { return q.id }

// ServerIDLen returns the server ID length in bytes.
func (q *QUICLB) ServerIDLen() int { return q.sidLen }

// Encrypted reports whether the configuration has a key.
func (q *QUICLB) Encrypted() bool { return q.block != nil }

// ServerID decodes the server ID of connection ID cid. It reports false when cid is shorter
// than ConnIDLen or its config rotation bits are not this configuration's (including the
// unroutable codepoint 7). The result aliases cid (plaintext) or sc (encrypted) and stays
// valid until the next call with the same scratch. It allocates nothing.
func (q *QUICLB) ServerID(cid []byte, sc *QUICScratch) ([]byte, bool) {
	if len(cid) < 1+q.plen || cid[0]>>5 != q.id {
		return nil, false
	}
	ct := cid[1 : 1+q.plen]
	switch {
	case q.block == nil:
		return ct[:q.sidLen], true
	case q.plen == 16:
		q.block.Decrypt(sc.sid[:], ct)
		return sc.sid[:q.sidLen], true
	}
	h := q.half
	copy(sc.l[:h], ct[:h])
	copy(sc.r[:h], ct[q.plen-h:])
	q.clearLeft(&sc.l)
	q.clearRight(&sc.r)
	q.round(sc, 4, &sc.r, &sc.l) // left_1
	q.clearLeft(&sc.l)
	q.round(sc, 3, &sc.l, &sc.r) // right_1
	q.clearRight(&sc.r)
	q.round(sc, 2, &sc.r, &sc.l) // left_0
	q.clearLeft(&sc.l)
	if 2*q.sidLen > q.plen { // the server ID reaches into right_0: one more round
		q.round(sc, 1, &sc.l, &sc.r)
		q.clearRight(&sc.r)
	}
	q.join(&sc.sid, &sc.l, &sc.r)
	return sc.sid[:q.sidLen], true
}

// Encode writes the connection ID for serverID (ServerIDLen bytes) and nonce (NonceLen
// bytes) into dst, which must hold ConnIDLen bytes, and returns it. The first octet carries
// the config rotation bits and the length of the rest (length self-description). Servers
// call it (through their QUIC library's connection ID generator); it is not meant for a
// packet path.
func (q *QUICLB) Encode(dst, serverID, nonce []byte) ([]byte, error) {
	if len(serverID) != q.sidLen || len(serverID)+len(nonce) != q.plen || len(dst) < 1+q.plen {
		return nil, fmt.Errorf("%w: encode %d-byte server ID and %d-byte nonce into %d bytes (want %d, %d, %d)",
			ErrQUICLBConfig, len(serverID), len(nonce), len(dst), q.sidLen, q.plen-q.sidLen, 1+q.plen)
	}
	dst = dst[:1+q.plen]
	dst[0] = q.id<<5 | uint8(q.plen)&0x1f
	pt := dst[1:]
	copy(pt, serverID)
	copy(pt[q.sidLen:], nonce)
	switch {
	case q.block == nil:
		return dst, nil
	case q.plen == 16:
		q.block.Encrypt(pt, pt)
		return dst, nil
	}
	var sc QUICScratch
	h := q.half
	copy(sc.l[:h], pt[:h])
	copy(sc.r[:h], pt[q.plen-h:])
	q.clearLeft(&sc.l)
	q.clearRight(&sc.r)
	for pass := uint8(1); pass <= 4; pass++ {
		if pass%2 == 1 {
			q.round(&sc, pass, &sc.l, &sc.r)
			q.clearRight(&sc.r)
		} else {
			q.round(&sc, pass, &sc.r, &sc.l)
			q.clearLeft(&sc.l)
		}
	}
	q.join(&sc.sid, &sc.l, &sc.r)
	copy(pt, sc.sid[:q.plen])
	return dst, nil
}

// round is one Feistel round: dst ^= truncate(AES(expand(plen, pass, src)), half).
func (q *QUICLB) round(sc *QUICScratch, pass uint8, src, dst *[16]byte) {
	sc.in = [16]byte{}
	copy(sc.in[:q.half], src[:q.half])
	sc.in[14] = uint8(q.plen)
	sc.in[15] = pass
	q.block.Encrypt(sc.out[:], sc.in[:])
	for i := range q.half {
		dst[i] ^= sc.out[i]
	}
}

// clearLeft clears the last four bits of a left half of an odd-length plaintext.
func (q *QUICLB) clearLeft(l *[16]byte) {
	if q.odd {
		l[q.half-1] &= 0xf0
	}
}

// clearRight clears the first four bits of a right half of an odd-length plaintext.
func (q *QUICLB) clearRight(r *[16]byte) {
	if q.odd {
		r[0] &= 0x0f
	}
}

// join puts the halves back together: for an odd length they share the middle byte.
func (q *QUICLB) join(dst *[20]byte, l, r *[16]byte) {
	copy(dst[:q.half], l[:q.half])
	if q.odd {
		dst[q.half-1] |= r[0] & 0x0f
		copy(dst[q.half:q.plen], r[1:q.half])
		return
	}
	copy(dst[q.half:q.plen], r[:q.half])
}
