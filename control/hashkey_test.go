package control

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/sched"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged starts a controller on YAML y, its log written to the returned buffer.
func startLogged(t *testing.T, y string) (*Controller, *fakePublisher, *syncBuffer) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	pub, logs := &fakePublisher{}, &syncBuffer{}
	c, err := New(cfg, Options{
		Publisher: pub,
		Resolver:  &fakeResolver{fail: map[netip.Addr]bool{}},
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		NewProber: func(ctx context.Context, o health.Options) Prober {
			return &fakeProber{opts: o, checks: map[string]health.Check{}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, pub, logs
}

// TestHashKey: the configured hash_key reaches every service's scheduler (so the Maglev
// slot of a flow depends on it), a reload with another key rebuilds them, and leaving it
// unset uses the public default with a warning in the log.
func TestHashKey(t *testing.T) {
	const key = "00112233445566778899aabbccddeeff"
	c, pub, logs := startLogged(t, "hash_key: "+key+"\n"+twoSvc)
	want, _ := sched.ParseHashKey(key)
	s := pub.last()
	for i := range s.NumServices() {
		if got := s.Service(i).Sched.HashKey(); got != want {
			t.Errorf("service %d: hash key %v, want %v", i, got, want)
		}
	}
	if strings.Contains(logs.String(), "hash_key is not set") {
		t.Errorf("warned with a key set:\n%s", logs)
	}

	other := "ffeeddccbbaa99887766554433221100"
	cfg, err := config.Parse("test.yaml", []byte("hash_key: "+other+"\n"+twoSvc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	want, _ = sched.ParseHashKey(other)
	if got := pub.last().Service(0).Sched.HashKey(); got != want {
		t.Errorf("after reload: hash key %v, want %v", got, want)
	}

	_, pub, logs = startLogged(t, twoSvc)
	if got := pub.last().Service(0).Sched.HashKey(); got != sched.DefaultHashKey() {
		t.Errorf("unset: hash key %v, want the default", got)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "hash_key is not set") ||
		!strings.Contains(logs.String(), sched.DefaultHashKeyHex) {
		t.Errorf("no warning about the default hash key:\n%s", logs)
	}
}
