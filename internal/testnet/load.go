package testnet

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
)

// Load is a request loop that runs until it is stopped: each worker sends GETs to a URL
// one after another through the client (a new connection per request unless the client
// keeps connections alive) and counts the answers, the failures and the slowest request,
// so a test can count what an event (a failover, a kill) cost while traffic flowed.
type Load struct {
	ok, failed, slowest atomic.Int64
	stop                context.CancelFunc
	wg                  sync.WaitGroup

	mu   sync.Mutex
	errs map[string]int
}

// StartLoad starts workers request loops against url; Stop ends them.
func StartLoad(ctx context.Context, c *http.Client, url string, workers int) *Load {
	ctx, stop := context.WithCancel(ctx)
	l := &Load{stop: stop, errs: map[string]int{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				_, err := lab.Get(ctx, c, url)
				if ctx.Err() != nil {
					return // cut short by Stop: neither a success nor a failure
				}
				for took := int64(time.Since(start)); ; {
					cur := l.slowest.Load()
					if took <= cur || l.slowest.CompareAndSwap(cur, took) {
						break
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs[err.Error()]++
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// Phase returns the answered and failed requests and the slowest request since the
// previous Phase (or the start), and starts counting a new phase.
func (l *Load) Phase() (ok, failed int64, slowest time.Duration) {
	return l.ok.Swap(0), l.failed.Swap(0), time.Duration(l.slowest.Swap(0)).Round(time.Millisecond)
}

// Stop ends the loops, waits for them, and returns the failure reasons with their counts
// over the whole run. Phase still reports what the last phase counted.
func (l *Load) Stop() map[string]int {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}
