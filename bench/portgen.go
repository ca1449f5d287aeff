package bench

import (
	"errors"
	"fmt"
)

// PortGenConfig is a generator on a port: one thread per queue, the stream split between
// them (each its share of the flows and of the rate).
type PortGenConfig struct {
	Port Port
	// Stream is what to send; a zero Base.SrcMAC takes the port's MAC.
	Stream StreamConfig
	// Rate is the target in packets per second over all queues; 0 sends flat out.
	Rate float64
}

// PortGen is a running port generator.
type PortGen struct {
	info   PortInfo
	stream *Stream
	gens   gens
}

// ErrSize is wrapped by the error for a frame size the port cannot send.
var ErrSize = errors.New("bench: frame size")

// NewPortStream checks c against the port and builds its stream: the interface exists, the
// rate is not negative, every frame fits the port's MTU.
func NewPortStream(c PortGenConfig) (*Stream, PortInfo, error) {
	info, err := c.Port.lookup()
	if err != nil {
		return nil, info, err
	}
	if c.Rate < 0 {
		return nil, info, fmt.Errorf("%w: rate %g packets/s", ErrGenerator, c.Rate)
	}
	if c.Stream.Base.SrcMAC == ([6]byte{}) && len(info.MAC) == 6 {
		c.Stream.Base.SrcMAC = [6]byte(info.MAC)
	}
	sizes := c.Stream.Sizes
	if len(sizes) == 0 {
		sizes = []SizeShare{{c.Stream.Base.Size, 1}}
	}
	for _, s := range sizes {
		// The MTU counts the IP packet: the frame is that plus the Ethernet header and FCS.
		if s.Size-ethLen-fcsLen > info.MTU {
			return nil, info, fmt.Errorf("%w: %d bytes does not fit %s (MTU %d: at most %d-byte frames)",
				ErrSize, s.Size, info.Iface, info.MTU, info.MTU+ethLen+fcsLen)
		}
	}
	st, err := NewStream(c.Stream)
	if err != nil {
		return nil, info, err
	}
	return st, info, nil
}

// StartPortGen opens the port's sockets and starts sending.
func StartPortGen(c PortGenConfig) (*PortGen, error) {
	st, info, err := NewPortStream(c)
	if err != nil {
		return nil, err
	}
	p := &PortGen{info: info, stream: st}
	p.info.ZeroCopy = true
	flows := uint64(st.Templates[0].Config().Flows)
	for q := range info.Queues {
		g, err := StartGenerator(GenConfig{NS: c.Port.NS, Ifindex: info.Index, Queue: q, CPU: info.CPUs[q],
			Stream: st, ZeroCopy: c.Port.ZeroCopy, Rate: c.Rate / float64(info.Queues),
			FirstFlow: uint64(q) * flows / uint64(info.Queues)})
		if err != nil {
			p.gens.Stop()
			return nil, err
		}
		p.gens = append(p.gens, g)
		p.info.ZeroCopy = p.info.ZeroCopy && g.zeroCopy
	}
	return p, nil
}

// Info returns the port as the generator opened it.
func (p *PortGen) Info() PortInfo { return p.info }

// Stream returns what the generator sends.
func (p *PortGen) Stream() *Stream { return p.stream }

// Sent returns the frames and bytes (FCS included) sent so far over every queue.
func (p *PortGen) Sent() (packets, bytes uint64) {
	for _, g := range p.gens {
		packets += g.Sent()
		bytes += g.SentBytes()
	}
	return packets, bytes
}

// Stop stops every queue's thread and returns what they sent.
func (p *PortGen) Stop() (GenResult, error) {
	r, err := p.gens.Stop()
	r.ZeroCopy = p.info.ZeroCopy
	return r, err
}
