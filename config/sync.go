package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/sched"
)

// Sync is the optional sync section: this host sends its connection-table changes to its
// peers and keeps theirs, so that a flow that moves to this host (a VRRP failover, an ECMP
// change) keeps its backend whatever the scheduler (package connsync, docs/connsync.md).
//
//	sync:
//	  listen: 198.18.0.2          # this host's address (port 9442 unless given)
//	  peers: [198.18.0.3]         # every other LB host
//	  key_file: /etc/xlb/sync.key # or key: <hex>; at least 32 hex digits, the same on all
type Sync struct {
	// Listen is the UDP address ("addr" or "addr:port", port 9442 by default) the peers
	// send to. Required.
	Listen string `yaml:"listen"`
	// Peers are the other LB hosts' listen addresses. At least one, unless Group is set.
	Peers []string `yaml:"peers"`
	// Group is a multicast group (e.g. 239.255.0.42) to send to and receive on, through
	// Interface (required with it), on Listen's port; the socket then binds the wildcard
	// address, so unicast peers are received too. Optional.
	Group     netip.Addr `yaml:"group"`
	Interface string     `yaml:"interface"`
	// Key is the shared HMAC-SHA256 key in hex (at least 32 digits, 128 bits); KeyFile
	// names a file holding it (white space trimmed). Exactly one of the two.
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
	// Interval bounds how long a change waits before it is sent. Default 10ms.
	Interval time.Duration `yaml:"interval"`
	// MaxMessage bounds a message's size in bytes. Default 1472 (one datagram in a
	// 1500-byte MTU).
	MaxMessage int `yaml:"max_message"`
	// Capacity is how many of the peers' connections this host keeps (72 bytes each;
	// the oldest of a full bucket goes first). Default 262144.
	Capacity int `yaml:"capacity"`
	// Refresh is how often a live flow is sent again, so that it stays on the peers.
	// Default 60s.
	Refresh time.Duration `yaml:"refresh"`
	// MaxSkew is how far a message's timestamp may be from this host's clock before the
	// message is refused as stale. Default 30s.
	MaxSkew time.Duration `yaml:"max_skew"`
	// NoTemplates keeps this host's persistence templates to itself: the peers then learn a
	// persistent client's backend only from its live connections, and a client with none
	// at a failover is scheduled afresh. For measuring what the templates buy. Default
	// false (templates are sent).
	NoTemplates bool `yaml:"no_templates"`

	pos pos
}

func (s *Sync) setPos(p pos) { s.pos = p }

// normalize fills the sync section's defaults (nil-safe).
func (s *Sync) normalize() {
	if s == nil {
		return
	}
	if s.Interval == 0 && !s.pos.has("interval") {
		s.Interval = connsync.DefaultInterval
	}
	if s.MaxMessage == 0 && !s.pos.has("max_message") {
		s.MaxMessage = connsync.DefaultMaxMessage
	}
	if s.Capacity == 0 && !s.pos.has("capacity") {
		s.Capacity = connsync.DefaultCapacity
	}
	if s.Refresh == 0 && !s.pos.has("refresh") {
		s.Refresh = connsync.DefaultRefresh
	}
	if s.MaxSkew == 0 && !s.pos.has("max_skew") {
		s.MaxSkew = connsync.DefaultMaxSkew
	}
}

// syncAddr parses "addr" or "addr:port" (port 9442 by default).
func syncAddr(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), connsync.DefaultPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// LoadKey returns the sync key the section names (key, or the content of key_file).
func (s *Sync) LoadKey() ([]byte, error) {
	h := s.Key
	if s.KeyFile != "" {
		b, err := os.ReadFile(s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sync key file: %w", err)
		}
		h = strings.TrimSpace(string(b))
	}
	k, err := hex.DecodeString(h)
	if err != nil {
		return nil, errors.New("the sync key is not hex")
	}
	if len(k) < connsync.MinKeySize {
		return nil, fmt.Errorf("the sync key has %d hex digits, want at least %d", 2*len(k), 2*connsync.MinKeySize)
	}
	return k, nil
}

// NodeConfig returns the connsync configuration of the section (reading key_file), with
// the connection table's timeouts.
func (s *Sync) NodeConfig(timeouts sched.Timeouts) (connsync.Config, error) {
	key, err := s.LoadKey()
	if err != nil {
		return connsync.Config{}, err
	}
	c := connsync.Config{Key: key, Interval: s.Interval, MaxMessage: s.MaxMessage, Capacity: s.Capacity,
		Refresh: s.Refresh, MaxSkew: s.MaxSkew, Timeouts: timeouts, Group: s.Group, Interface: s.Interface,
		NoTemplates: s.NoTemplates}
	if c.Listen, err = syncAddr(s.Listen); err != nil {
		return connsync.Config{}, fmt.Errorf("%w: sync.listen: %w", ErrValue, err)
	}
	for _, p := range s.Peers {
		ap, err := syncAddr(p)
		if err != nil {
			return connsync.Config{}, fmt.Errorf("%w: sync.peers: %w", ErrValue, err)
		}
		c.Peers = append(c.Peers, ap)
	}
	return c, nil
}

// validateSync checks the sync section, if any, each error on its field's line.
func (c *Config) validateSync(e *errs) {
	s := c.Sync
	if s == nil || c.failed["sync"] || c.failedUnder("sync.") {
		return
	}
	at := s.pos.at
	listen, err := syncAddr(s.Listen)
	switch {
	case s.Listen == "":
		e.add(at("listen"), "sync.listen", ErrMissing, "listen is required (this host's address the peers send to)")
	case err != nil:
		e.add(at("listen"), "sync.listen", ErrValue, "%v", err)
	}
	if len(s.Peers) == 0 && !s.Group.IsValid() {
		e.add(at("peers"), "sync.peers", ErrMissing, "at least one peer (or a multicast group) is required")
	}
	switch {
	case s.Group.IsValid() && !s.Group.IsMulticast():
		e.add(at("group"), "sync.group", ErrValue, "%v is not a multicast address", s.Group)
	case s.Group.IsValid() && s.Interface == "":
		e.add(at("group"), "sync.interface", ErrMissing, "a multicast group needs the interface to join it on")
	case !s.Group.IsValid() && s.Interface != "":
		e.add(at("interface"), "sync.interface", ErrValue, "interface is only for a multicast group")
	}
	seen := map[netip.AddrPort]bool{}
	for i, p := range s.Peers {
		path := "sync.peers[" + strconv.Itoa(i) + "]"
		ap, err := syncAddr(p)
		switch {
		case err != nil:
			e.add(at("peers"), path, ErrValue, "%v", err)
		case ap == listen:
			e.add(at("peers"), path, ErrValue, "%s is this host's own listen address", p)
		case seen[ap]:
			e.add(at("peers"), path, ErrDuplicate, "%s listed twice", p)
		}
		seen[ap] = true
	}
	switch {
	case s.Key != "" && s.KeyFile != "":
		e.add(at("key_file"), "sync.key_file", ErrValue, "set key or key_file, not both")
	case s.Key == "" && s.KeyFile == "":
		e.add(s.pos.line, "sync.key", ErrMissing, "key or key_file is required (at least 32 hex digits, the same on every peer)")
	default:
		field := "key"
		if s.KeyFile != "" {
			field = "key_file"
		}
		if _, err := s.LoadKey(); err != nil {
			e.add(at(field), "sync."+field, ErrValue, "%v", err)
		}
	}
	if s.Interval <= 0 || s.Interval > time.Second {
		e.add(at("interval"), "sync.interval", ErrValue, "%v is outside 1ns..1s", s.Interval)
	}
	if lo, hi := connsync.Size(1), connsync.Size(connsync.MaxRecords); s.MaxMessage < lo || s.MaxMessage > hi {
		e.add(at("max_message"), "sync.max_message", ErrValue, "%d is outside %d..%d bytes", s.MaxMessage, lo, hi)
	}
	if s.Capacity < 8 || s.Capacity > 1<<26 {
		e.add(at("capacity"), "sync.capacity", ErrValue, "%d is outside 8..%d", s.Capacity, 1<<26)
	}
	if s.Refresh < time.Second {
		e.add(at("refresh"), "sync.refresh", ErrValue, "%v is below 1s", s.Refresh)
	}
	if s.MaxSkew < time.Second {
		e.add(at("max_skew"), "sync.max_skew", ErrValue, "%v is below 1s", s.MaxSkew)
	}
}

// syncView is the sync section without its positions, for comparison.
func syncView(s *Sync) *Sync {
	if s == nil {
		return nil
	}
	w := *s
	w.pos = pos{}
	return &w
}

// Equal reports whether two sync sections (either may be nil) say the same.
func (s *Sync) Equal(o *Sync) bool { return reflect.DeepEqual(syncView(s), syncView(o)) }
