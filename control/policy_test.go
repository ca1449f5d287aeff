package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
)

var aclSvc = strings.Replace(twoSvc, "    health: {kind: tcp, interval: 1s, timeout: 500ms}\n", `    health: {kind: tcp, interval: 1s, timeout: 500ms}
    acl:
      deny: [198.18.9.0/24]
    limits:
      source_new_flows: {rate: 10, burst: 20}
`, 1)

// TestPolicyPublished: the configured acl and limits reach the snapshot; the API replaces
// the acl (kept across a health change), a bad list is refused, and a reload brings the
// configured one back.
func TestPolicyPublished(t *testing.T) {
	r := newRig(t, aclSvc)
	pf := netip.MustParsePrefix
	want := dataplane.Policy{Deny: []netip.Prefix{pf("198.18.9.0/24")},
		SourceNewFlows: dataplane.Rate{PerSecond: 10, Burst: 20}, SourceBits4: 24, SourceBits6: 64}
	if got := r.spec("web").Policy; !samePolicy(&got, &want) {
		t.Fatalf("published policy %+v, want %+v", got, want)
	}
	if got := r.spec("dns").Policy; !got.IsZero() {
		t.Errorf("dns has no policy, published %+v", got)
	}
	cl := &Client{Base: serve(t, NewHandler(r.c, HandlerOptions{}))}
	ctx := context.Background()
	must(t, cl.SetACL(ctx, "web", []netip.Prefix{pf("198.18.0.0/15")}, nil))
	r.prober.fire("web/a", health.StateUp) // a health change republishes
	got := r.spec("web").Policy
	if len(got.Allow) != 1 || len(got.Deny) != 0 || got.SourceNewFlows.PerSecond != 10 {
		t.Errorf("after SetACL: %+v", got)
	}
	var ae *APIError
	if err := cl.SetACL(ctx, "web", []netip.Prefix{pf("10.0.0.0/8")}, []netip.Prefix{pf("10.0.0.0/8")}); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("a prefix in both lists: %v, want 400", err)
	}
	huge := make([]netip.Prefix, config.MaxACLEntries)
	for i := range huge {
		huge[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	if err := cl.SetACL(ctx, "web", huge, nil); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "at most") {
		t.Errorf("more entries than the program can swap: %v, want 400", err)
	}
	if err := cl.SetACL(ctx, "nothing", nil, nil); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("unknown service: %v, want 404", err)
	}
	// ctl save keeps the replaced ACL: the saved file parses, and a reload of it publishes
	// the same lists.
	saved, err := r.c.SaveYAML()
	must(t, err)
	scfg, err := config.Parse("saved.yaml", saved)
	if err != nil {
		t.Fatalf("saved configuration: %v\n%s", err, saved)
	}
	sa, sd := scfg.Services[scfg.ServiceIndex("web")].ACL.Lists()
	if len(sa) != 1 || sa[0] != pf("198.18.0.0/15") || len(sd) != 0 {
		t.Errorf("saved acl: allow %v deny %v, want the one set through the API\n%s", sa, sd, saved)
	}
	if a := scfg.Services[scfg.ServiceIndex("dns")].ACL; !a.IsZero() {
		t.Errorf("saved acl of dns %+v, want none", a)
	}
	cfg, err := config.Parse("test.yaml", []byte(aclSvc))
	must(t, err)
	must(t, r.c.Reload(cfg))
	if got := r.spec("web").Policy; !samePolicy(&got, &want) {
		t.Errorf("after reload %+v, want the configured %+v", got, want)
	}
}

func samePolicy(a, b *dataplane.Policy) bool {
	return len(a.Allow) == len(b.Allow) && len(a.Deny) == len(b.Deny) && (len(a.Deny) == 0 || a.Deny[0] == b.Deny[0]) &&
		a.NewFlows == b.NewFlows && a.SourceNewFlows == b.SourceNewFlows && a.SourceBits4 == b.SourceBits4 && a.SourceBits6 == b.SourceBits6
}

// TestReloadAPIAccessNeedsRestart: the socket and TLS settings belong to the listeners, so
// a reload that changes them is refused (the running configuration stays).
func TestReloadAPIAccessNeedsRestart(t *testing.T) {
	r := newRig(t, twoSvc)
	for _, api := range []string{"api: {socket: /run/xlb-other.sock}\n", "api: {socket_group: '0'}\n"} {
		if err := r.c.Reload(r.parse(twoSvc + api)); !errors.Is(err, ErrRestartRequired) {
			t.Errorf("reload with %q: %v, want ErrRestartRequired", api, err)
		}
	}
	must(t, r.c.Reload(r.parse(twoSvc)))
}
