package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// fillers returns n-1 prefixes that hold no test address (10.0.0.0/8 /24s and
// 2001:db8::/32 /48s, v6 when the client is) and the client's own /32 or /128 at index at.
func fillers(client netip.Addr, n, at int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n - 1 {
		if client.Is4() {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
			continue
		}
		var a [16]byte
		a[0], a[1], a[2], a[3], a[4], a[5] = 0x20, 0x01, 0x0d, 0xb8, byte(i>>8), byte(i)
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(a), 48))
	}
	return append(out[:at], append([]netip.Prefix{netip.PrefixFrom(client, client.BitLen())}, out[at:]...)...)
}

// reach makes one request to the service and reports whether it was answered; a SYN the
// XDP program drops leaves the connection unanswered until the short deadline.
func reach(t *testing.T, tn *lab.Net, sp ServiceSpec) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	_, _, err := httpGet(ctx, tn.Client, sp.VIP, sp.Port)
	return err == nil
}

// TestE2EACL: a client in the first or the last prefix of a 10,000-prefix deny list (IPv4
// and IPv6) cannot connect, one in the first or last of an allow list can; every drop is
// counted for its service and rule. Meanwhile a long-lived connection from another address
// keeps working, and a request loop from it, while the lists are swapped, loses nothing.
func TestE2EACL(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 1})
	dp := startDataplane(t, tn.LB, "eth0")
	sp4 := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	sp6 := backendSpec(t, tn, "web6", 1, tn.VIP6, 80, MethodDR)
	publishAndStart(t, dp, mustSnapshot(t, nil, sp4, sp6))
	if !reach(t, tn, sp4) || !reach(t, tn, sp6) {
		t.Fatal("no answer before any acl")
	}
	// A second client address on the client's interface, never listed, with its own load.
	other := netip.MustParseAddr("198.18.0.50")
	if err := tn.Client.AddAddr("eth0", netip.PrefixFrom(other, 24)); err != nil {
		t.Fatal(err)
	}
	httpc := tn.Client.HTTPClient(lab.ClientOptions{LocalAddr: &net.TCPAddr{IP: other.AsSlice()}, Timeout: 2 * time.Second})
	load := testnet.StartLoad(context.Background(), httpc, fmt.Sprintf("http://%s:80/", tn.VIP), 2)
	defer load.Stop()

	publish := func(p4, p6 Policy) {
		t.Helper()
		a, b := sp4, sp6
		a.Policy, b.Policy = p4, p6
		if err := dp.Publish(mustSnapshot(t, nil, a, b)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	c4, c6 := tn.Client.Addr(), tn.Client.Addr6()
	for _, at := range []int{0, 9999} {
		publish(Policy{Deny: fillers(c4, 10000, at)}, Policy{Deny: fillers(c6, 10000, at)})
		if reach(t, tn, sp4) || reach(t, tn, sp6) {
			t.Errorf("deny list, client at %d: answered", at)
		}
		publish(Policy{Allow: append(fillers(c4, 10000, at), netip.PrefixFrom(other, 32))},
			Policy{Allow: fillers(c6, 10000, at)})
		if !reach(t, tn, sp4) || !reach(t, tn, sp6) {
			t.Errorf("allow list, client at %d: no answer", at)
		}
	}
	publish(Policy{Allow: []netip.Prefix{netip.PrefixFrom(other, 32)}}, Policy{})
	if reach(t, tn, sp4) || !reach(t, tn, sp6) {
		t.Errorf("allow list without the client: v4 answered or v6 (no acl) did not")
	}
	ok, failed, slowest := load.Phase()
	t.Logf("load from %v while the lists changed: %d ok, %d failed, slowest %v", other, ok, failed, slowest)
	if ok == 0 || failed != 0 {
		t.Errorf("the unlisted client's load: %d ok, %d failed (%v)", ok, failed, load.Stop())
	}
	drops, err := dp.PolicyDrops()
	if err != nil {
		t.Fatal(err)
	}
	// Each refused connection is a SYN and its retransmissions: at least one per refusal.
	if drops["web"].ACL < 3 || drops["web6"].ACL < 2 || drops["web"].Rate+drops["web6"].Rate != 0 {
		t.Errorf("policy drops %+v", drops)
	}
	hits, err := dp.ACLHits("web")
	if err != nil {
		t.Fatal(err)
	}
	var dflt uint64
	for _, h := range hits {
		if h.Default && h.Prefix.Addr().Is4() {
			dflt = h.Packets
		}
	}
	if len(hits) != 3 || dflt == 0 {
		t.Errorf("acl hits of web: %+v", hits)
	}
}

// TestE2ENewFlowLimit: a service limited to a burst of 3 new flows (and 1 per second)
// answers 3 fresh connections in a row and refuses the next ones; the drops are counted.
func TestE2ENewFlowLimit(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 1})
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodDR)
	sp.Policy = Policy{SourceNewFlows: Rate{PerSecond: 1, Burst: 3}}
	publishAndStart(t, dp, mustSnapshot(t, nil, sp))
	answered := 0
	for range 6 {
		if reach(t, tn, sp) {
			answered++
		}
	}
	// 6 attempts within ~2s: 3 from the burst, at most 2 more refilled (a retransmitted SYN
	// can get through after a second).
	drops, err := dp.PolicyDrops()
	if err != nil {
		t.Fatal(err)
	}
	if answered < 3 || answered > 5 || drops["web"].SourceRate == 0 {
		t.Errorf("%d of 6 answered, drops %+v", answered, drops["web"])
	}
}
