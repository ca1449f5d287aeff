package connsync

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// Defaults of Config.
const (
	DefaultPort       = 9442
	DefaultInterval   = 10 * time.Millisecond
	DefaultMaxMessage = 1472 // one IPv4 UDP datagram in a 1500-byte MTU
	DefaultCapacity   = 1 << 18
	DefaultRingSize   = 1 << 13
	DefaultRefresh    = 60 * time.Second
	DefaultMaxSkew    = 30 * time.Second
)

// ErrConfig is wrapped by New's errors.
var ErrConfig = errors.New("connsync: invalid config")

// Config configures a Node.
type Config struct {
	// Listen is the UDP address peers send to (e.g. 198.18.0.2:9442); the zero value does
	// not receive.
	Listen netip.AddrPort
	// Peers are the UDP addresses this host sends to (every other LB host).
	Peers []netip.AddrPort
	// Group, when set, is a multicast group the node also sends to (port: Listen's) and
	// receives on, joined on Interface; the socket then binds the wildcard address with
	// Listen's port, so it receives unicast peers too. Messages go out with TTL 1 and do
	// not loop back.
	Group     netip.Addr
	Interface string
	// Key is the shared HMAC-SHA256 key, at least MinKeySize bytes, the same on every peer.
	Key []byte
	// Interval bounds how long a record waits before it is sent (default 10ms).
	Interval time.Duration
	// MaxMessage bounds a message's size in bytes, sent and received (default 1472).
	MaxMessage int
	// Capacity is the received-entry table's size (default 262144 entries, 18 MiB).
	Capacity int
	// RingSize is each worker's queue of records to send (a power of two, default 8192).
	RingSize int
	// Refresh is how often a live flow is sent again (default 60s).
	Refresh time.Duration
	// MaxSkew is how far a message's timestamp may be from this host's clock (default 30s).
	MaxSkew time.Duration
	// Timeouts expire received entries, as the connection table's (zero: LVS's).
	Timeouts sched.Timeouts
	// NoTemplates keeps this host's persistence templates to itself (peers still learn a
	// client's backend from its synced connections): what the templates buy can be
	// measured against it.
	NoTemplates bool
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.Capacity <= 0 {
		c.Capacity = DefaultCapacity
	}
	if c.RingSize <= 0 {
		c.RingSize = DefaultRingSize
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = DefaultMaxSkew
	}
}

// Drop reasons of received messages and of records not sent.
const (
	DropShort = iota
	DropMagic
	DropVersion
	DropLength
	DropOversized
	DropAuth
	DropRecord
	DropReplay
	DropStale
	DropKind     // records of a kind this version does not know (skipped, the rest applied)
	DropRingFull // records a worker could not queue
	DropSendError
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"short", "magic", "version", "length", "oversized", "auth",
	"record", "replay", "stale", "kind", "ring_full", "send_error"}

// DropName returns drop reason i's snake_case name (a metric label).
func DropName(i int) string {
	if i >= 0 && i < NumDropReasons {
		return dropNames[i]
	}
	return "unknown"
}

var dropErrs = [...]error{ErrShort, ErrMagic, ErrVersion, ErrLength, ErrOversized, ErrAuth, ErrRecord, ErrReplay, ErrStale, ErrKind}

// Stats are a Node's counters.
type Stats struct {
	Sender          uint64 // this process's sender id
	SentMessages    uint64
	SentRecords     uint64
	SentBytes       uint64           // UDP payload bytes, summed over peers
	SentKinds       [NumKinds]uint64 // SentRecords by kind
	Received        uint64           // datagrams received
	ReceivedRecords uint64           // records of accepted messages
	Applied         uint64           // records written to the table
	AppliedKinds    [NumKinds]uint64 // Applied by kind (a removal: one that removed an entry)
	Lost            uint64           // sequence numbers skipped (messages lost, or reordered past)
	Dropped         [NumDropReasons]uint64
	LagLast         time.Duration // receive time minus the oldest record's queueing bound, last message
	LagMax          time.Duration
	// SenderCPU and ReceiverCPU are the CPU time (user and system) of the sender's and the
	// receiver's threads so far: what the sync costs this host beyond the workers' pushes.
	SenderCPU   time.Duration
	ReceiverCPU time.Duration
	Table       TableStats
	Peers       []string
	Listen      string
}

// Node sends this host's connection changes to its peers and keeps theirs in a Table.
// Make it with New; Ring gives each worker its queue (before Run); Run sends and receives
// until its context ends.
type Node struct {
	cfg    Config
	sender uint64
	table  *Table

	mu    sync.Mutex
	rings []*Ring

	send    atomicStats
	recv    atomicStats
	dropped [NumDropReasons]atomic.Uint64
	lagLast atomic.Int64
	lagMax  atomic.Int64
	sendCPU atomic.Int64 // ns, the sender thread's CPU time
	recvCPU atomic.Int64
}

type atomicStats struct {
	msgs, records, bytes, applied, lost atomic.Uint64
	kinds                               [NumKinds]atomic.Uint64
}

// New checks cfg and builds a node; it opens nothing (Run does).
func New(cfg Config) (*Node, error) {
	cfg.defaults()
	if len(cfg.Key) < MinKeySize {
		return nil, fmt.Errorf("%w: %w", ErrConfig, ErrKey)
	}
	if cfg.MaxMessage < Size(1) || cfg.MaxMessage > Size(MaxRecords) {
		return nil, fmt.Errorf("%w: max message %d outside %d..%d", ErrConfig, cfg.MaxMessage, Size(1), Size(MaxRecords))
	}
	if cfg.Group.IsValid() && (!cfg.Group.IsMulticast() || cfg.Interface == "" || !cfg.Listen.IsValid()) {
		return nil, fmt.Errorf("%w: multicast group %v needs a multicast address, an interface and a listen port", ErrConfig, cfg.Group)
	}
	if cfg.RingSize&(cfg.RingSize-1) != 0 {
		return nil, fmt.Errorf("%w: ring size %d is not a power of two", ErrConfig, cfg.RingSize)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Node{cfg: cfg, sender: binary.BigEndian.Uint64(id[:]) | 1,
		table: NewTable(cfg.Capacity, cfg.Timeouts)}, nil
}

// Table returns the table of the peers' connections.
func (n *Node) Table() *Table { return n.table }

// Refresh returns Config.Refresh (with its default).
func (n *Node) Refresh() time.Duration { return n.cfg.Refresh }

// Templates reports whether this host sends its persistence templates (not
// Config.NoTemplates).
func (n *Node) Templates() bool { return !n.cfg.NoTemplates }

// Ring returns a new queue for one worker's records; the sender drains it. Call it before
// the worker pushes; it may be called while Run runs.
func (n *Node) Ring() *Ring {
	q := newRing(n.cfg.RingSize)
	n.mu.Lock()
	n.rings = append(n.rings, q)
	n.mu.Unlock()
	return q
}

// Listen opens the node's UDP socket (bound to Config.Listen, or to any address and a
// free port when that is unset) in the calling thread's network namespace.
func (n *Node) Listen() (*net.UDPConn, error) {
	var laddr *net.UDPAddr
	if n.cfg.Listen.IsValid() {
		laddr = net.UDPAddrFromAddrPort(n.cfg.Listen)
	}
	network := "udp"
	if n.cfg.Group.IsValid() {
		laddr, network = &net.UDPAddr{Port: int(n.cfg.Listen.Port())}, "udp6"
		if n.cfg.Group.Is4() {
			network = "udp4"
		}
	}
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("connsync: listen: %w", err)
	}
	setBuffers(pc, socketBuffer)
	if n.cfg.Group.IsValid() {
		if err := joinGroup(pc, n.cfg.Group, n.cfg.Interface); err != nil {
			pc.Close()
			return nil, err
		}
	}
	return pc, nil
}

// Run opens the socket (Listen) and serves on it until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	pc, err := n.Listen()
	if err != nil {
		return err
	}
	n.Serve(ctx, pc)
	return nil
}

// Serve sends this host's records to the peers from pc and receives theirs on it until
// ctx ends; it closes pc.
func (n *Node) Serve(ctx context.Context, pc *net.UDPConn) {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.receive(pc)
	}()
	n.sendLoop(ctx, pc)
	pc.Close()
	wg.Wait()
}
