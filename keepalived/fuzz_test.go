package keepalived

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/xlb-dev/xlb/config"
)

// FuzzImport feeds arbitrary text to the parser and the translator: neither may panic, a
// parsed input must translate, and every translation must be a configuration xlb accepts.
// Includes resolve in an empty file system, so the fuzzer reads no real file.
func FuzzImport(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	more, _ := filepath.Glob("testdata/*/*.conf")
	for _, name := range append(files, more...) {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("virtual_server 198.18.0.1 80 { real_server 198.18.0.2 80 { } }"))
	f.Fuzz(func(t *testing.T, src []byte) {
		nodes, err := parseSrc(fstest.MapFS{}, map[string]string{}, "fuzz.conf", src, nil)
		if err != nil {
			return
		}
		res, err := Translate(nodes, Options{})
		if err != nil {
			t.Fatalf("parsed but did not translate: %v", err)
		}
		if _, err := config.Parse("fuzz.yaml", res.YAML); err != nil {
			t.Fatalf("translation refused by xlb: %v\n%s", err, res.YAML)
		}
	})
}
