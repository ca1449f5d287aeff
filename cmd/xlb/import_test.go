package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportKeepalived runs `xlb import keepalived` on every keepalived.conf of the
// importer's testdata and `xlb run --check` on what it wrote; a syntax error writes no YAML.
func TestImportKeepalived(t *testing.T) {
	files, err := filepath.Glob("../../keepalived/testdata/*.conf")
	if err != nil || len(files) < 10 {
		t.Fatalf("%d keepalived.conf files: %v", len(files), err)
	}
	dir := t.TempDir()
	for _, f := range files {
		out := filepath.Join(dir, filepath.Base(f)+".yaml")
		code, stdout, stderr := runXLB("import", "keepalived", "-o", out, f)
		if code != 0 || stdout != "" {
			t.Fatalf("import %s: exit %d, stdout %q, stderr %s", f, code, stdout, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if line != "" && !strings.HasPrefix(line, f) {
				t.Errorf("import %s: a note without the file name: %q", f, line)
			}
		}
		if code, _, errs := runXLB("run", "--check", "--config", out); code != 0 || !strings.Contains(errs, "configuration OK") {
			y, _ := os.ReadFile(out)
			t.Errorf("xlb run --check on the import of %s: exit %d: %s\n%s", f, code, errs, y)
		}
	}
	// To standard output without -o.
	code, stdout, _ := runXLB("import", "keepalived", "../../keepalived/testdata/01-web-dr.conf")
	if code != 0 || !strings.Contains(stdout, "virtual_router_id: 51") {
		t.Errorf("import to stdout: %d %q", code, stdout)
	}
	bad := "../../keepalived/testdata/bad/unbalanced.conf"
	code, stdout, stderr := runXLB("import", "keepalived", bad)
	if code != 1 || stdout != "" || !strings.Contains(stderr, bad+":1: missing }") {
		t.Errorf("syntax error: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := runXLB("import", "haproxy", "x"); code != 2 {
		t.Errorf("import haproxy: exit %d, want 2", code)
	}
}
