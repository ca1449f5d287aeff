package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const xdpDrop = 1

var (
	svcTCP  = Key{netip.MustParseAddr("198.18.0.11"), 0, 6}    // tcp/* in loaded()
	svcUDP  = Key{netip.MustParseAddr("198.18.0.10"), 53, 17}  // udp/53
	svc6TCP = Key{netip.MustParseAddr("2001:db8::10"), 443, 6} // tcp/443
)

// prefixes returns n distinct /24s in 10.0.0.0/8 and n /48s in 2001:db8::/32
// (first and last are the ones tests probe).
func prefixes(n int) (v4, v6 []netip.Prefix) {
	for i := range n {
		v4 = append(v4, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
		var a [16]byte
		a[0], a[1], a[2], a[3], a[4], a[5] = 0x20, 0x01, 0x0d, 0xb8, byte(i>>8), byte(i)
		v6 = append(v6, netip.PrefixFrom(netip.AddrFrom16(a), 48))
	}
	return v4, v6
}

// host returns an address inside pf (offset 7 from its start).
func host(pf netip.Prefix) string {
	a := pf.Addr()
	if a.Is4() {
		b := a.As4()
		b[3] = 7
		return netip.AddrFrom4(b).String()
	}
	b := a.As16()
	b[15] = 7
	return netip.AddrFrom16(b).String()
}

func syn6(src, dst string, sport, dport uint16) []byte {
	th := ports(sport, dport)
	th[13] = 0x02
	return ip6Frame(src, dst, nil, 6, th)
}

func setPolicy(t *testing.T, p *Program, k Key, pol Policy) {
	t.Helper()
	if err := p.SetPolicy(k, pol); err != nil {
		t.Fatalf("SetPolicy %v: %v", k, err)
	}
}

func expect(t *testing.T, p *Program, name string, frame []byte, verdict uint32, reason Reason) {
	t.Helper()
	if v, r := run(t, p, frame); v != verdict || r != reason {
		t.Errorf("%s: verdict %d reason %v, want %d %v", name, v, r, verdict, reason)
	}
}

func hitsOf(t *testing.T, p *Program, k Key) map[netip.Prefix]RuleHits {
	t.Helper()
	hs, err := p.ACLHits(k)
	if err != nil {
		t.Fatalf("ACLHits: %v", err)
	}
	m := map[netip.Prefix]RuleHits{}
	for _, h := range hs {
		m[h.Prefix] = h
	}
	return m
}

// TestACLDenyList10k: a deny list of 10,000 IPv4 and 10,000 IPv6 prefixes
// drops its first and last prefix, passes addresses next to them, and counts
// each hit on its rule and the service.
func TestACLDenyList10k(t *testing.T) {
	p := loaded(t)
	v4, v6 := prefixes(10000)
	setPolicy(t, p, svcTCP, Policy{Deny: v4})
	setPolicy(t, p, svc6TCP, Policy{Deny: v6})
	for _, pf := range []netip.Prefix{v4[0], v4[len(v4)-1]} {
		expect(t, p, "denied "+pf.String(), tcp4(t, host(pf), "198.18.0.11", 1234, 80), xdpDrop, DroppedACL)
	}
	for _, pf := range []netip.Prefix{v6[0], v6[len(v6)-1]} {
		expect(t, p, "denied "+pf.String(), syn6(host(pf), "2001:db8::10", 1234, 443), xdpDrop, DroppedACL)
	}
	expect(t, p, "just past the last v4", tcp4(t, "10.39.16.1", "198.18.0.11", 1234, 80), xdpPass, PassNoSocket)
	expect(t, p, "v6 just past the last", syn6("2001:db8:2710::1", "2001:db8::10", 1234, 443), xdpPass, PassNoSocket)
	expect(t, p, "other service, denied source", udp4(t, host(v4[0]), "198.18.0.10", 1234, 53), xdpPass, PassNoSocket)
	h4, h6 := hitsOf(t, p, svcTCP), hitsOf(t, p, svc6TCP)
	if len(h4) != 10000 || len(h6) != 10000 {
		t.Fatalf("rules: %d v4, %d v6, want 10000 each", len(h4), len(h6))
	}
	for _, c := range []struct {
		h  map[netip.Prefix]RuleHits
		pf netip.Prefix
		n  uint64
	}{{h4, v4[0], 1}, {h4, v4[len(v4)-1], 1}, {h4, v4[1], 0}, {h6, v6[0], 1}, {h6, v6[len(v6)-1], 1}} {
		if got := c.h[c.pf]; got.Packets != c.n || !got.Deny {
			t.Errorf("rule %v: %+v, want %d packets, deny", c.pf, got, c.n)
		}
	}
	d, err := p.ServiceDrops(svcTCP)
	if err != nil || d[DropACL] != 2 || d[DropRate]+d[DropSourceRate] != 0 {
		t.Errorf("service drops %v, %v; want 2 acl", d, err)
	}
}

// TestACLAllowList10k: with an allow list only its prefixes (first and last of
// 10,000, both families) get through; the rest hit the default deny.
func TestACLAllowList10k(t *testing.T) {
	p := loaded(t)
	v4, v6 := prefixes(10000)
	setPolicy(t, p, svcTCP, Policy{Allow: v4})
	setPolicy(t, p, svc6TCP, Policy{Allow: v6})
	expect(t, p, "first v4", tcp4(t, host(v4[0]), "198.18.0.11", 1234, 80), xdpPass, PassNoSocket)
	expect(t, p, "last v4", tcp4(t, host(v4[len(v4)-1]), "198.18.0.11", 1234, 80), xdpPass, PassNoSocket)
	expect(t, p, "not listed v4", tcp4(t, "198.18.0.2", "198.18.0.11", 1234, 80), xdpDrop, DroppedACL)
	expect(t, p, "first v6", syn6(host(v6[0]), "2001:db8::10", 1234, 443), xdpPass, PassNoSocket)
	expect(t, p, "last v6", syn6(host(v6[len(v6)-1]), "2001:db8::10", 1234, 443), xdpPass, PassNoSocket)
	expect(t, p, "not listed v6", syn6("2001:db9::1", "2001:db8::10", 1234, 443), xdpDrop, DroppedACL)
	h := hitsOf(t, p, svcTCP)
	if d := h[netip.MustParsePrefix("0.0.0.0/0")]; !d.Default || !d.Deny || d.Packets != 1 {
		t.Errorf("v4 default rule %+v, want 1 packet", d)
	}
	if a := h[v4[0]]; a.Deny || a.Packets != 1 {
		t.Errorf("first allow rule %+v, want 1 packet", a)
	}
}

// TestACLLongestPrefix: allow and deny are matched together, the longest
// prefix deciding; an IPv4-mapped prefix is the IPv4 one.
func TestACLLongestPrefix(t *testing.T) {
	p := loaded(t)
	setPolicy(t, p, svcTCP, Policy{
		Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.18.5.9/32")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.5.0/120")},
	})
	for _, c := range []struct {
		src     string
		verdict uint32
		reason  Reason
	}{
		{"198.18.0.2", xdpPass, PassNoSocket},
		{"198.18.5.8", xdpDrop, DroppedACL},
		{"198.18.5.9", xdpPass, PassNoSocket},
		{"198.20.0.1", xdpDrop, DroppedACL},
	} {
		expect(t, p, c.src, tcp4(t, c.src, "198.18.0.11", 1234, 80), c.verdict, c.reason)
	}
	err := p.SetPolicy(svcTCP, Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if !errors.Is(err, ErrPolicy) {
		t.Errorf("a prefix in both lists: %v, want ErrPolicy", err)
	}
	expect(t, p, "refused change keeps the old acl", tcp4(t, "198.18.5.8", "198.18.0.11", 1234, 80), xdpDrop, DroppedACL)
}

// TestACLFragments: a fragment to a VIP with one service of its protocol is
// filtered by that service's ACL.
func TestACLFragments(t *testing.T) {
	p := loaded(t)
	setPolicy(t, p, svcTCP, Policy{Deny: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}})
	frag := func(src string) []byte {
		ip := ip4(src, "198.18.0.11", layers.IPProtocolTCP)
		ip.FragOffset = 185
		return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 64)))
	}
	expect(t, p, "denied fragment", frag("198.18.7.1"), xdpDrop, DroppedACL)
	expect(t, p, "allowed fragment", frag("198.18.8.1"), xdpPass, PassNoSocket)
	setPolicy(t, p, svcTCP, Policy{})
	expect(t, p, "acl removed", frag("198.18.7.1"), xdpPass, PassNoSocket)
	// 198.18.0.10 has one udp service, port 53: its fragments are its own.
	setPolicy(t, p, svcUDP, Policy{Deny: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}})
	ip := ip4("198.18.7.1", "198.18.0.10", layers.IPProtocolUDP)
	ip.FragOffset = 185
	udpFrag := serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 64)))
	expect(t, p, "udp fragment, the vip's only udp service", udpFrag, xdpDrop, DroppedACL)
	if err := p.AddService(Key{netip.MustParseAddr("198.18.0.10"), 54, 17}); err != nil {
		t.Fatal(err)
	}
	expect(t, p, "udp fragment, two udp services", udpFrag, xdpPass, PassNoSocket)
}

// TestACLSwapNoGap: while the ACL is replaced over and over (a deny list, then
// an allow list, neither admitting the source), packets from a denied source
// never get through.
func TestACLSwapNoGap(t *testing.T) {
	p := loaded(t)
	v4, _ := prefixes(2000)
	bad := netip.MustParsePrefix("198.18.9.0/24")
	denyList := Policy{Deny: append([]netip.Prefix{bad}, v4...)}
	allowList := Policy{Allow: v4[:1000]}
	setPolicy(t, p, svcTCP, denyList)
	frame := tcp4(t, "198.18.9.9", "198.18.0.11", 1234, 80)
	var stop atomic.Bool
	var passed, runs atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			v, err := p.objs.Xlb.Run(&ebpf.RunOptions{Data: frame, Repeat: 100})
			if err != nil || v != xdpDrop {
				passed.Add(1)
			}
			runs.Add(1)
		}
	}()
	for i := range 20 {
		pol := denyList
		if i%2 == 0 {
			pol = allowList
		}
		setPolicy(t, p, svcTCP, pol)
	}
	stop.Store(true)
	wg.Wait()
	if passed.Load() != 0 || runs.Load() == 0 {
		t.Fatalf("%d of %d runs let a denied source through", passed.Load(), runs.Load())
	}
	// A rule that stays through a swap keeps its count (the loop above may not have run
	// in the last deny period on a loaded machine: count here, then swap).
	if _, err := p.objs.Xlb.Run(&ebpf.RunOptions{Data: frame, Repeat: 10}); err != nil {
		t.Fatal(err)
	}
	before := hitsOf(t, p, svcTCP)[bad].Packets
	setPolicy(t, p, svcTCP, Policy{Deny: append(denyList.Deny, netip.MustParsePrefix("198.18.200.0/24"))})
	if hs := hitsOf(t, p, svcTCP); before < 10 || hs[bad].Packets != before {
		t.Errorf("the kept deny rule lost its count: %+v, had %d", hs[bad], before)
	}
}

// TestLimitNewFlows: a service limit of burst 5 admits 5 SYNs and drops the
// sixth; packets of established flows pass; another service is not limited.
func TestLimitNewFlows(t *testing.T) {
	p := loaded(t)
	setPolicy(t, p, svcTCP, Policy{NewFlows: Rate{PerSecond: 1, Burst: 5}})
	for i := range 5 {
		expect(t, p, fmt.Sprintf("syn %d", i), tcp4(t, "198.18.0.2", "198.18.0.11", uint16(1000+i), 80), xdpPass, PassNoSocket)
	}
	expect(t, p, "syn over the rate", tcp4(t, "198.18.3.2", "198.18.0.11", 2000, 80), xdpDrop, DroppedRate)
	expect(t, p, "ack of an admitted flow", tcp4ack(t, "198.18.0.2", "198.18.0.11", 1000, 80), xdpPass, PassNoSocket)
	expect(t, p, "udp service", udp4(t, "198.18.0.2", "198.18.0.10", 1, 53), xdpPass, PassNoSocket)
	d, err := p.ServiceDrops(svcTCP)
	if err != nil || d[DropRate] != 1 {
		t.Errorf("service drops %v, %v; want 1 rate", d, err)
	}
	setPolicy(t, p, svcTCP, Policy{NewFlows: Rate{PerSecond: 1, Burst: 5}})
	expect(t, p, "unchanged limit keeps its bucket", tcp4(t, "198.18.3.2", "198.18.0.11", 2001, 80), xdpDrop, DroppedRate)
	setPolicy(t, p, svcTCP, Policy{})
	expect(t, p, "limit removed", tcp4(t, "198.18.3.2", "198.18.0.11", 2002, 80), xdpPass, PassNoSocket)
}

// TestLimitPerSource: each /24 (IPv4) and /64 (IPv6) gets its own bucket of 3.
func TestLimitPerSource(t *testing.T) {
	p := loaded(t)
	rate := Rate{PerSecond: 1, Burst: 3}
	setPolicy(t, p, svcTCP, Policy{SourceNewFlows: rate})
	setPolicy(t, p, svc6TCP, Policy{SourceNewFlows: rate})
	for i := range 3 {
		expect(t, p, "198.18.4.x", tcp4(t, fmt.Sprintf("198.18.4.%d", i+1), "198.18.0.11", 1000, 80), xdpPass, PassNoSocket)
		expect(t, p, "2001:db8:4::/64", syn6(fmt.Sprintf("2001:db8:4::%d", i+1), "2001:db8::10", 1000, 443), xdpPass, PassNoSocket)
	}
	expect(t, p, "fourth from the /24", tcp4(t, "198.18.4.200", "198.18.0.11", 1000, 80), xdpDrop, DroppedSourceRate)
	expect(t, p, "fourth from the /64", syn6("2001:db8:4::ffff:1", "2001:db8::10", 1000, 443), xdpDrop, DroppedSourceRate)
	expect(t, p, "next /24", tcp4(t, "198.18.5.1", "198.18.0.11", 1000, 80), xdpPass, PassNoSocket)
	setPolicy(t, p, svc6TCP, Policy{SourceNewFlows: Rate{PerSecond: 1, Burst: 4}})
	expect(t, p, "new limits, fresh source buckets", syn6("2001:db8:4::ffff:1", "2001:db8::10", 1000, 443), xdpPass, PassNoSocket)
	expect(t, p, "next /64", syn6("2001:db8:4:1::1", "2001:db8::10", 1000, 443), xdpPass, PassNoSocket)
	setPolicy(t, p, svcTCP, Policy{SourceNewFlows: rate, SourceBits4: 16})
	for i := range 3 {
		expect(t, p, "198.18/16", tcp4(t, fmt.Sprintf("198.18.%d.1", 100+i), "198.18.0.11", 1000, 80), xdpPass, PassNoSocket)
	}
	expect(t, p, "fourth from the /16", tcp4(t, "198.18.200.1", "198.18.0.11", 1000, 80), xdpDrop, DroppedSourceRate)
	if err := p.SetPolicy(svcTCP, Policy{SourceNewFlows: rate, SourceBits4: 33}); !errors.Is(err, ErrPolicy) {
		t.Errorf("source bits 33: %v, want ErrPolicy", err)
	}
}

// TestPolicySlots: deleting a service frees its slot and rules; a service
// added in its place starts with clean counters and no policy.
func TestPolicySlots(t *testing.T) {
	p := loaded(t)
	pol := Policy{Deny: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}}
	setPolicy(t, p, svcTCP, pol)
	expect(t, p, "denied", tcp4(t, "198.18.7.1", "198.18.0.11", 1, 80), xdpDrop, DroppedACL)
	free := len(p.freeRules)
	if err := p.DeleteService(svcTCP); err != nil {
		t.Fatal(err)
	}
	if len(p.freeRules) != free+1 || len(p.freeIDs) != MaxServices-2 {
		t.Fatalf("after delete: %d free rules (want %d), %d free ids", len(p.freeRules), free+1, len(p.freeIDs))
	}
	if err := p.AddService(svcTCP); err != nil {
		t.Fatal(err)
	}
	expect(t, p, "re-added without policy", tcp4(t, "198.18.7.1", "198.18.0.11", 1, 80), xdpPass, PassNoSocket)
	if d, err := p.ServiceDrops(svcTCP); err != nil || d != (Drops{}) {
		t.Errorf("drops of the re-added service %v, %v", d, err)
	}
	if err := p.SetPolicy(Key{netip.MustParseAddr("198.18.0.99"), 1, 6}, pol); !errors.Is(err, ErrKey) {
		t.Errorf("policy of a missing service: %v, want ErrKey", err)
	}
}

func tcp4ack(t testing.TB, src, dst string, sport, dport uint16) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	c := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), ACK: true, Window: 1024}
	c.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, c)
}
