package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestHelpersInBinary: the binary's dependencies hold no test-only
// package (internal/testnet, the testing package).
func TestNoTestHelpersInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasSuffix(pkg, "/internal/testnet") || strings.Contains(pkg, "/internal/testnet/") {
			t.Errorf("the binary depends on the test-only package %s", pkg)
		}
	}
}
