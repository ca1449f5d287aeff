package config

import (
	"os"
	"strings"
	"testing"
)

// TestConfigReferenceParses parses every YAML block of docs/config.md, so the
// reference cannot drift from what xlb accepts.
func TestConfigReferenceParses(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("docs/config.md has %d yaml blocks, want 3", len(blocks))
	}
	for i, b := range blocks {
		end := strings.Index(b, "```")
		if end < 0 {
			t.Fatalf("block %d is not closed", i)
		}
		cfg, err := Parse("docs/config.md block", []byte(b[:end]))
		if err != nil {
			t.Errorf("block %d: %v", i, err)
			continue
		}
		if len(cfg.Services) == 0 {
			t.Errorf("block %d: no services", i)
		}
	}
}
