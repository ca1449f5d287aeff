package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// IMIX is the simple Internet mix: 7 frames of 64 bytes, 4 of 594 and 1 of 1518 (FCS
// included), in that proportion and interleaved.
var IMIX = []SizeShare{{64, 7}, {594, 4}, {1518, 1}}

// SizeShare is a frame size and its share of a mix.
type SizeShare struct {
	Size  int
	Share int
}

// StreamConfig describes a traffic stream: the frames of Base in every combination of the
// sizes and protocols given, interleaved in their shares.
type StreamConfig struct {
	// Base gives MACs, addresses, port and flows; its Size and Proto are taken from Sizes
	// and Protos.
	Base TemplateConfig
	// Sizes are the frame sizes and their shares (default: Base.Size alone).
	Sizes []SizeShare
	// Protos are the protocols and their shares, e.g. {TCPSYN, 1}, {TCPACK, 9} for a
	// connection mix of one new flow per nine established packets (default: Base.Proto).
	Protos []ProtoShare
}

// ProtoShare is a protocol and its share of a mix.
type ProtoShare struct {
	Proto Proto
	Share int
}

// Stream is the templates of a StreamConfig and the order the generator sends them in:
// packet k is Templates[Pattern[k%len(Pattern)]]. Read-only after NewStream.
type Stream struct {
	Templates []*Template
	Pattern   []uint8
}

// maxPattern bounds the length of a stream's pattern (the sum of the shares, multiplied).
const maxPattern = 4096

// NewStream builds the templates of c.
func NewStream(c StreamConfig) (*Stream, error) {
	if len(c.Sizes) == 0 {
		c.Sizes = []SizeShare{{c.Base.Size, 1}}
	}
	if len(c.Protos) == 0 {
		c.Protos = []ProtoShare{{c.Base.Proto, 1}}
	}
	if len(c.Sizes)*len(c.Protos) > 255 {
		return nil, fmt.Errorf("%w: %d sizes x %d protocols", ErrTemplate, len(c.Sizes), len(c.Protos))
	}
	var sizePat, protoPat []int
	for i, s := range c.Sizes {
		if s.Share < 1 || len(sizePat)+s.Share > maxPattern {
			return nil, fmt.Errorf("%w: share %d of size %d", ErrTemplate, s.Share, s.Size)
		}
		sizePat = append(sizePat, spread(i, s.Share)...)
	}
	for i, p := range c.Protos {
		if p.Share < 1 || len(protoPat)+p.Share > maxPattern {
			return nil, fmt.Errorf("%w: share %d of %v", ErrTemplate, p.Share, p.Proto)
		}
		protoPat = append(protoPat, spread(i, p.Share)...)
	}
	if len(sizePat)*len(protoPat) > maxPattern {
		return nil, fmt.Errorf("%w: mix of %d x %d frames is longer than %d", ErrTemplate, len(sizePat), len(protoPat), maxPattern)
	}
	st := &Stream{}
	for _, s := range c.Sizes {
		for _, p := range c.Protos {
			tc := c.Base
			tc.Size, tc.Proto = s.Size, p.Proto
			t, err := NewTemplate(tc)
			if err != nil {
				return nil, err
			}
			st.Templates = append(st.Templates, t)
		}
	}
	sizePat, protoPat = interleave(sizePat, len(c.Sizes)), interleave(protoPat, len(c.Protos))
	n := len(sizePat) * len(protoPat)
	for k := range n {
		// Walk both patterns in step (k%len each) over their least common multiple, then
		// shift one of them, so every combination occurs in its share.
		si := sizePat[k%len(sizePat)]
		pi := protoPat[(k+k/lcm(len(sizePat), len(protoPat)))%len(protoPat)]
		st.Pattern = append(st.Pattern, uint8(si*len(c.Protos)+pi))
	}
	return st, nil
}

// SingleStream is the stream of one template.
func SingleStream(t *Template) *Stream {
	return &Stream{Templates: []*Template{t}, Pattern: []uint8{0}}
}

// Mean returns the mean frame length on the wire (FCS included) over the pattern.
func (s *Stream) Mean() float64 {
	var n int
	for _, i := range s.Pattern {
		n += s.Templates[i].Len() + fcsLen
	}
	return float64(n) / float64(len(s.Pattern))
}

// MaxLen returns the longest frame's length (without FCS).
func (s *Stream) MaxLen() int {
	n := 0
	for _, t := range s.Templates {
		n = max(n, t.Len())
	}
	return n
}

func spread(i, n int) []int {
	r := make([]int, n)
	for k := range r {
		r[k] = i
	}
	return r
}

// interleave orders pat (n kinds, each repeated its share) so the kinds alternate as evenly
// as they can: kind i's j-th copy goes at position (j+0.5)/share of the way through.
func interleave(pat []int, n int) []int {
	count := make([]int, n)
	for _, k := range pat {
		count[k]++
	}
	type slot struct {
		pos  float64
		kind int
	}
	var slots []slot
	for k, c := range count {
		for j := range c {
			slots = append(slots, slot{(float64(j) + 0.5) / float64(c), k})
		}
	}
	// Insertion sort: patterns are short.
	for i := 1; i < len(slots); i++ {
		for j := i; j > 0 && slots[j].pos < slots[j-1].pos; j-- {
			slots[j], slots[j-1] = slots[j-1], slots[j]
		}
	}
	out := make([]int, len(slots))
	for i, s := range slots {
		out[i] = s.kind
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int) int { return a / gcd(a, b) * b }

// ParseSizes parses a frame-size list: "imix", or comma-separated sizes each with an
// optional share ("64:7,594:4,1518"). Sizes are checked by NewTemplate.
func ParseSizes(s string) ([]SizeShare, error) {
	if s == "imix" {
		return IMIX, nil
	}
	var out []SizeShare
	for _, f := range strings.Split(s, ",") {
		sz, sh, ok := strings.Cut(f, ":")
		n, err := strconv.Atoi(sz)
		share := 1
		if ok && err == nil {
			share, err = strconv.Atoi(sh)
		}
		if err != nil || n <= 0 || share < 1 {
			return nil, fmt.Errorf("%w: frame size %q (want SIZE[:SHARE], comma-separated, or imix)", ErrTemplate, f)
		}
		out = append(out, SizeShare{n, share})
	}
	return out, nil
}

// ParseProtos parses a protocol list: "udp", "tcp-syn", "tcp-ack", or a mix with shares
// ("tcp-syn:1,tcp-ack:9").
func ParseProtos(s string) ([]ProtoShare, error) {
	var out []ProtoShare
	for _, f := range strings.Split(s, ",") {
		name, sh, ok := strings.Cut(f, ":")
		p, err := ParseProto(name)
		if err != nil {
			return nil, err
		}
		share := 1
		if ok {
			if share, err = strconv.Atoi(sh); err != nil || share < 1 {
				return nil, fmt.Errorf("%w: share %q of %s", ErrTemplate, sh, name)
			}
		}
		out = append(out, ProtoShare{p, share})
	}
	return out, nil
}
