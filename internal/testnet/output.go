package testnet

import (
	"strings"
	"sync"
)

// Output collects what a process writes (give it as a command's Stdout and
// Stderr), so a test can read it while the process runs. It is safe for
// concurrent use.
type Output struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
