package control

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/connsync"
)

type fakeSync struct{ s connsync.Stats }

func (f fakeSync) Stats() connsync.Stats { return f.s }

func TestSyncAPI(t *testing.T) {
	r := newRig(t, twoSvc)
	var ae *APIError
	cl := &Client{Base: serve(t, NewHandler(r.c, HandlerOptions{}))}
	if _, err := cl.Sync(context.Background()); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "no sync section") {
		t.Errorf("GET /sync without sync: %v", err)
	}
	src := fakeSync{connsync.Stats{Sender: 0xab, SentRecords: 7, Applied: 5, LagLast: 3 * time.Millisecond,
		Peers: []string{"198.18.0.3:9442"}, Table: connsync.TableStats{Capacity: 64, Entries: 5}}}
	src.s.Dropped[connsync.DropAuth] = 2
	m := NewMetrics(r.c, nil)
	if err := m.Registry().Register(SyncCollector(src)); err != nil {
		t.Fatal(err)
	}
	base := serve(t, NewHandler(r.c, HandlerOptions{Sync: src, Metrics: m.Handler()}))
	cl = &Client{Base: base}
	st, err := cl.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.SentRecords != 7 || st.Applied != 5 || st.Dropped["auth"] != 2 || st.Dropped["replay"] != 0 ||
		st.Sender != "00000000000000ab" || st.LagLast != 3*time.Millisecond || st.Table.Entries != 5 {
		t.Errorf("sync status %+v", st)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`xlb_sync_dropped_total{reason="auth"} 2`, "xlb_sync_sent_records_total 7",
		"xlb_sync_applied_total 5", "xlb_sync_lag_seconds 0.003", "xlb_sync_table_entries 5"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestReloadSyncNeedsRestart: the sync node is built at start, so a reload that adds,
// changes or removes the sync section is refused; one that keeps it applies.
func TestReloadSyncNeedsRestart(t *testing.T) {
	const sync = "sync: {listen: 198.18.0.2, peers: [198.18.0.3], key: 00112233445566778899aabbccddeeff}\n"
	r := newRig(t, twoSvc+sync)
	if err := r.c.Reload(r.parse(twoSvc + sync)); err != nil {
		t.Errorf("reload with the same sync section: %v", err)
	}
	for _, y := range []string{twoSvc, twoSvc + strings.Replace(sync, "198.18.0.3", "198.18.0.4", 1)} {
		if err := r.c.Reload(r.parse(y)); !errors.Is(err, ErrRestartRequired) {
			t.Errorf("reload changing the sync section: %v, want ErrRestartRequired", err)
		}
	}
}
