package ha

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A Drop is one service whose packets a Guard drops: the VIP, the
// destination port (0: every port) and the IP protocol number.
type Drop struct {
	VIP   netip.Addr
	Port  uint16
	Proto uint8
}

func (d Drop) compare(e Drop) int {
	return cmp.Or(d.VIP.Compare(e.VIP), cmp.Compare(d.Proto, e.Proto), cmp.Compare(d.Port, e.Port))
}

// SortDrops sorts drops into the order a Guard writes its rules in and
// removes duplicates, so two lists of the same services compare equal.
func SortDrops(drops []Drop) []Drop {
	slices.SortFunc(drops, Drop.compare)
	return slices.Compact(drops)
}

// ErrBadDrop is returned for a Drop a Guard cannot express (an invalid VIP).
var ErrBadDrop = errors.New("guard: drop without a valid VIP")

// A Guard is the nftables table "inet <Table>" with one base chain in the
// input hook (filter priority, policy accept) that drops the packets of a
// list of services to their VIPs. It is what the crash guard of a VRRP
// master is made of: the table stays in the kernel when the process dies.
// A Guard talks netlink to nf_tables itself (no nft binary), in the network
// namespace of the calling thread, or in the one NetNS refers to. Applying
// needs CAP_NET_ADMIN in that namespace.
type Guard struct {
	Table string // the table's name, e.g. xlb_vrrp_51
	NetNS int    // a network namespace file descriptor; 0: the calling thread's
}

func (g Guard) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if g.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(g.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// Apply replaces the table by one that drops drops, in one nf_tables
// transaction (the old rules hold until the new ones are in place), or
// removes it when drops is empty.
func (g Guard) Apply(drops []Drop) error {
	for _, d := range drops {
		if !d.VIP.IsValid() {
			return fmt.Errorf("%w: %+v", ErrBadDrop, d)
		}
	}
	c, err := g.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: g.Table}
	// Adding before deleting makes the delete succeed whether or not the
	// table exists (the kernel applies the batch as one transaction).
	c.AddTable(t)
	c.DelTable(t)
	if len(drops) > 0 {
		c.AddTable(t)
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		for _, d := range drops {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: dropExprs(d)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: table inet %s: %w", g.Table, err)
	}
	return nil
}

// Remove deletes the table whether or not it exists.
func (g Guard) Remove() error { return g.Apply(nil) }

// Drops reads the table back: the services its rules drop, sorted, or nil
// when the table does not exist. Rules not written by Apply are an error.
func (g Guard) Drops() ([]Drop, error) {
	c, err := g.conn()
	if err != nil {
		return nil, err
	}
	t, err := c.ListTableOfFamily(g.Table, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nftables: list table inet %s: %w", g.Table, err)
	}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "input", Table: t})
	if err != nil {
		return nil, fmt.Errorf("nftables: rules of inet %s input: %w", g.Table, err)
	}
	drops := make([]Drop, 0, len(rules))
	for _, r := range rules {
		d, ok := parseDrop(r.Exprs)
		if !ok {
			return nil, fmt.Errorf("nftables: inet %s: a rule Apply does not write (handle %d)", g.Table, r.Handle)
		}
		drops = append(drops, d)
	}
	return SortDrops(drops), nil
}

// dropExprs is the rule "ip[6] daddr VIP meta l4proto PROTO [th dport PORT] drop".
func dropExprs(d Drop) []expr.Any {
	nfproto, off, addr := byte(unix.NFPROTO_IPV4), uint32(16), d.VIP.AsSlice() // IPv4 destination
	if d.VIP.Is6() {
		nfproto, off = unix.NFPROTO_IPV6, 24 // IPv6 destination
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.Proto}},
	}
	if d.Port != 0 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(d.Port)})
	}
	return append(e, &expr.Verdict{Kind: expr.VerdictDrop})
}

// parseDrop inverts dropExprs on the expressions the kernel lists.
func parseDrop(e []expr.Any) (Drop, bool) {
	var d Drop
	if len(e) != 7 && len(e) != 9 {
		return d, false
	}
	addr, ok := cmpData(e[3])
	if !ok {
		return d, false
	}
	if d.VIP, ok = netip.AddrFromSlice(addr); !ok {
		return d, false
	}
	if p, ok := cmpData(e[5]); ok && len(p) == 1 {
		d.Proto = p[0]
	} else {
		return d, false
	}
	if len(e) == 9 {
		p, ok := cmpData(e[7])
		if !ok || len(p) != 2 {
			return d, false
		}
		d.Port = binaryutil.BigEndian.Uint16(p)
	}
	v, ok := e[len(e)-1].(*expr.Verdict)
	return d, ok && v.Kind == expr.VerdictDrop
}

func cmpData(e expr.Any) ([]byte, bool) {
	c, ok := e.(*expr.Cmp)
	if !ok || c.Op != expr.CmpOpEq {
		return nil, false
	}
	return c.Data, true
}
