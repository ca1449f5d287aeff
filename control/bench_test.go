package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

// bigConfig has services x backends, every backend with no health check.
func bigConfig(services, backends int) string {
	var sb strings.Builder
	sb.WriteString("interfaces: [{name: eth0}]\nservices:\n")
	for s := range services {
		fmt.Fprintf(&sb, "  - name: s%d\n    vip: 198.19.%d.%d\n    port: 80\n    health: {kind: none}\n    backends:\n", s, s/250, 1+s%250)
		for i := range backends {
			fmt.Fprintf(&sb, "      - {address: %s}\n", netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)}))
		}
	}
	return sb.String()
}

func benchController(b *testing.B, services, backends int) (*Controller, *fakePublisher) {
	cfg, err := config.Parse("big.yaml", []byte(bigConfig(services, backends)))
	if err != nil {
		b.Fatal(err)
	}
	pub := &fakePublisher{}
	c, err := New(cfg, Options{Publisher: pub, Resolver: &fakeResolver{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProber: func(ctx context.Context, o health.Options) Prober {
			return &fakeProber{opts: o, checks: map[string]health.Check{}}
		}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, pub
}

// BenchmarkChange is one weight change from the API call to the published
// snapshot: every service's scheduler snapshot (Maglev table, 65537 slots)
// and the data-path snapshot are rebuilt.
func BenchmarkChange(b *testing.B) {
	for _, sz := range []struct{ services, backends int }{{1, 10}, {1, 100}, {1, 1000}, {10, 10}, {50, 20}} {
		b.Run(fmt.Sprintf("services=%d/backends=%d", sz.services, sz.backends), func(b *testing.B) {
			c, pub := benchController(b, sz.services, sz.backends)
			b.ReportAllocs()
			w := uint32(1)
			for b.Loop() {
				w = w%1000 + 1
				if err := c.SetWeight("s0", "198.18.0.1", w); err != nil {
					b.Fatal(err)
				}
			}
			pub.mu.Lock()
			pub.snaps = nil
			pub.mu.Unlock()
		})
	}
}

// BenchmarkReload is a reload of an unchanged configuration (validation
// included, parsing not).
func BenchmarkReload(b *testing.B) {
	for _, sz := range []struct{ services, backends int }{{1, 100}, {10, 10}, {50, 20}} {
		b.Run(fmt.Sprintf("services=%d/backends=%d", sz.services, sz.backends), func(b *testing.B) {
			c, pub := benchController(b, sz.services, sz.backends)
			cfg, err := config.Parse("big.yaml", []byte(bigConfig(sz.services, sz.backends)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Reload(cfg); err != nil {
					b.Fatal(err)
				}
			}
			pub.mu.Lock()
			pub.snaps = nil
			pub.mu.Unlock()
		})
	}
}

// BenchmarkChangeRebuildAll is the baseline of BenchmarkChange: every
// service's scheduler snapshot rebuilt on every change (what the controller
// did before it kept them).
func BenchmarkChangeRebuildAll(b *testing.B) {
	for _, sz := range []struct{ services, backends int }{{10, 10}, {50, 20}} {
		b.Run(fmt.Sprintf("services=%d/backends=%d", sz.services, sz.backends), func(b *testing.B) {
			c, pub := benchController(b, sz.services, sz.backends)
			b.ReportAllocs()
			w := uint32(1)
			for b.Loop() {
				w = w%1000 + 1
				c.mu.Lock()
				for _, s := range c.services {
					s.built = nil
				}
				c.mu.Unlock()
				if err := c.SetWeight("s0", "198.18.0.1", w); err != nil {
					b.Fatal(err)
				}
			}
			pub.mu.Lock()
			pub.snaps = nil
			pub.mu.Unlock()
		})
	}
}
