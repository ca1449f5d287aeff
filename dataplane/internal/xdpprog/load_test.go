package xdpprog

import (
	"os"
	"testing"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

func TestLoadVerifies(t *testing.T) {
	requireRoot(t)
	p, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
