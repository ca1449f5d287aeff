package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/ipvs"
)

func TestExportIPVSAdm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(path, []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    scheduler: source-hash
    backends: [{address: 198.18.0.11, weight: 50}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"export", "ipvsadm", "--config", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "-A -t 198.18.0.100:80 -s sh\n-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 50\n"; out.String() != want {
		t.Errorf("rules:\n%s\nwant:\n%s", out.String(), want)
	}
	if !strings.Contains(errb.String(), "# web: scheduler source-hash as sh") {
		t.Errorf("notes: %q", errb.String())
	}
	out.Reset()
	if code := run([]string{"export", "ipvsadm", "--comments", "--config", path}, &out, &errb); code != 0 {
		t.Fatalf("--comments: exit %d", code)
	}
	if err := ipvs.Check(strings.NewReader(out.String())); err != nil || !strings.Contains(out.String(), "\n# ") {
		t.Errorf("with comments: %v\n%s", err, out.String())
	}
	// A bad file is refused with its line.
	if err := os.WriteFile(path, []byte("services:\n  - name: web\n    vip: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"export", "ipvsadm", "--config", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), path+":3") {
		t.Errorf("bad config: exit %d, %s", code, errb.String())
	}
	if code := run([]string{"export", "nft"}, &out, &errb); code != 2 {
		t.Errorf("unknown format: exit %d", code)
	}
}
