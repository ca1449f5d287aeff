package xlb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// fakeDP is a DataPath that records its life and can fail to start.
type fakeDP struct {
	mu        sync.Mutex
	publishes int
	started   bool
	closed    int
	startErr  error
}

func (f *fakeDP) Publish(*dataplane.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishes++
	return nil
}

func (f *fakeDP) Stats() []dataplane.WorkerStats { return nil }

func (f *fakeDP) Start(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = true
	return f.startErr
}

func (f *fakeDP) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

type hop struct{}

func (hop) Resolve(context.Context, netip.Addr) (dataplane.NextHop, error) {
	return dataplane.NextHop{IfIndex: 1, SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0, 0, 0, 0, 2}}, nil
}

func testConfig() *config.Config {
	return &config.Config{
		Interfaces: []config.Interface{{Name: "eth0"}},
		Services: []config.Service{{Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Port: 80,
			Backends: []config.Backend{{Address: netip.MustParseAddr("198.18.0.11")}},
			Health:   config.Health{Kind: config.HealthNone}}},
	}
}

func newTestLB(t *testing.T, dp *fakeDP, opts ...Option) *LB {
	t.Helper()
	lb, err := New(testConfig(), append([]Option{WithDataPath(dp), WithResolver(hop{}),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	return lb
}

func start(t *testing.T, lb *LB) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- lb.Run(context.Background()) }()
	select {
	case <-lb.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return done
}

func TestNewRefusesBadConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Services[0].Method = config.Method(9)
	cfg.Services[0].Backends[0].Address = netip.Addr{}
	_, err := New(cfg, WithDataPath(&fakeDP{}))
	var ce config.ConfigErrors
	if !errors.As(err, &ce) || len(ce) != 2 || !errors.Is(err, config.ErrValue) || !errors.Is(err, config.ErrMissing) {
		t.Fatalf("err = %v, want the bad method and the missing address", err)
	}
}

func TestCloseStopsRunOnce(t *testing.T) {
	dp := &fakeDP{}
	lb := newTestLB(t, dp)
	done := start(t, lb)
	if st := lb.Status(context.Background()); !st.Running || len(st.Services) != 1 || st.Services[0].Up != 1 {
		t.Errorf("status while running = %+v", st)
	}
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after Close: %v", err)
	}
	if err := lb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if dp.closed != 1 || dp.publishes == 0 {
		t.Errorf("data path closed %d times, %d publishes", dp.closed, dp.publishes)
	}
	if err := lb.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Run: %v, want ErrClosed", err)
	}
	if lb.Status(context.Background()).Running {
		t.Error("running after Run returned")
	}
}

func TestCloseBeforeRun(t *testing.T) {
	dp := &fakeDP{}
	lb := newTestLB(t, dp)
	lb.Close()
	if err := lb.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	if dp.started || dp.closed != 0 {
		t.Errorf("the data path was touched: started %v, closed %d", dp.started, dp.closed)
	}
}

// TestStartFailureCleansUp: a data path that fails to start is closed and
// Run returns its error (wrapped).
func TestStartFailureCleansUp(t *testing.T) {
	boom := errors.New("boom")
	dp := &fakeDP{startErr: boom}
	lb := newTestLB(t, dp)
	if err := lb.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want boom", err)
	}
	if dp.closed != 1 {
		t.Errorf("data path closed %d times, want 1", dp.closed)
	}
	select {
	case <-lb.Ready():
		t.Error("ready after a failed start")
	default:
	}
}

func TestAPIAndRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	lb := newTestLB(t, &fakeDP{}, WithAPI("127.0.0.1:0"), WithAPISocket(sock), WithRegistry(reg))
	if lb.APIAddr() != nil {
		t.Error("API address before Run")
	}
	start(t, lb)
	cl := &control.Client{Base: "http://" + lb.APIAddr().String()}
	svcs, err := cl.Services(context.Background())
	if err != nil || len(svcs) != 1 || svcs[0].Method != config.MethodDR {
		t.Fatalf("API services = %+v, %v", svcs, err)
	}
	// Changes go through the socket; over TCP without a token they are refused.
	if err := (&control.Client{Socket: sock}).SetACL(context.Background(), "web", nil, nil); err != nil {
		t.Errorf("change through the socket: %v", err)
	}
	var ae *control.APIError
	if err := cl.SetACL(context.Background(), "web", nil, nil); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("change over tcp without a token: %v, want 403", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if all := strings.Join(names, " "); !strings.Contains(all, "xlb_backend_up") || strings.Contains(all, "go_goroutines") {
		t.Errorf("registry holds %s; want xlb's metrics and no runtime collectors", all)
	}
}

func TestAPIOffByDefault(t *testing.T) {
	lb := newTestLB(t, &fakeDP{})
	start(t, lb)
	if a := lb.APIAddr(); a != nil {
		t.Errorf("API listening on %v without WithAPI", a)
	}
}
