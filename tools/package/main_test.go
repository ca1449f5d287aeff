package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// xlbBin is the xlb binary the tests package, built once by TestMain.
var xlbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xlb-package-test-")
	if err != nil {
		panic(err)
	}
	xlbBin = filepath.Join(dir, "xlb")
	code := 1
	if out, err := exec.Command("go", "build", "-o", xlbBin, "../../cmd/xlb").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildXLB returns the binary TestMain built.
func buildXLB(t *testing.T) string {
	t.Helper()
	return xlbBin
}

// TestPackages builds the .deb and the .rpm and checks what they hold.
func TestPackages(t *testing.T) {
	bin := buildXLB(t)
	out := t.TempDir()
	paths, err := packageAll(options{out: out, version: "1.2.3", arch: "amd64", binary: bin, root: "../..",
		formats: []string{"deb", "rpm"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "xlb_1.2.3_amd64.deb" || filepath.Base(paths[1]) != "xlb-1.2.3-1.x86_64.rpm" {
		t.Fatalf("packages: %v", paths)
	}
	rpm, err := os.ReadFile(paths[1])
	if err != nil || !bytes.HasPrefix(rpm, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Errorf("%s is not an rpm (lead magic): %v", paths[1], err)
	}
	if _, err := exec.LookPath("rpm"); err == nil {
		list, err := exec.Command("rpm", "-qlp", paths[1]).Output()
		want := "/etc/xlb\n/etc/xlb/xlb.yaml\n/usr/bin/xlb\n/usr/lib/systemd/system/xlb.service\n/usr/lib/sysusers.d/xlb.conf\n" +
			"/usr/share/bash-completion/completions/xlb\n/usr/share/fish/vendor_completions.d/xlb.fish\n" +
			"/usr/share/man/man8/xlb.8.gz\n/usr/share/zsh/site-functions/_xlb\n"
		if err != nil || string(list) != want {
			t.Errorf("rpm -qlp: %v\n%s\nwant:\n%s", err, list, want)
		}
		conf, err := exec.Command("rpm", "-qp", "--configfiles", paths[1]).Output()
		if err != nil || string(conf) != "/etc/xlb/xlb.yaml\n" {
			t.Errorf("rpm config files: %q, %v", conf, err)
		}
	} else {
		t.Log("rpm not installed (Debian package rpm): the .rpm's contents are not checked")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed: the .deb's contents are not checked")
	}
	list, err := exec.Command("dpkg-deb", "--contents", paths[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/xlb", "./usr/lib/systemd/system/xlb.service", "./usr/lib/sysusers.d/xlb.conf",
		"drwxr-x--- root/root .* ./etc/xlb/", "-rw-r----- root/root .* ./etc/xlb/xlb.yaml", "./usr/share/man/man8/xlb.8.gz",
		"./usr/share/bash-completion/completions/xlb", "./usr/share/zsh/vendor-completions/_xlb",
		"./usr/share/fish/vendor_completions.d/xlb.fish",
	} {
		mode, path, ok := strings.Cut(want, " .* ") // "mode owner .* path" or just a path
		if !ok {
			mode, path = "", want
		}
		if !slices.ContainsFunc(strings.Split(string(list), "\n"), func(l string) bool {
			return strings.HasPrefix(l, mode) && strings.HasSuffix(l, " "+path)
		}) {
			t.Errorf("the .deb lacks %q:\n%s", want, list)
		}
	}
	conffiles, err := exec.Command("dpkg-deb", "--info", paths[0], "conffiles").Output()
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/xlb/xlb.yaml" {
		t.Errorf("conffiles: %q, %v", conffiles, err)
	}
	ctl, err := exec.Command("dpkg-deb", "--field", paths[0], "Package", "Version", "Architecture").Output()
	if err != nil || string(ctl) != "Package: xlb\nVersion: 1.2.3\nArchitecture: amd64\n" {
		t.Errorf("control fields: %q, %v", ctl, err)
	}
	// The man page is the binary's own, built from its flag definitions.
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", paths[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	man, err := exec.Command("sh", "-c", "gzip -dc "+filepath.Join(dir, "usr/share/man/man8/xlb.8.gz")).Output()
	if err != nil || !strings.Contains(string(man), `.BR \-\-replace\-xdp`) || !strings.Contains(string(man), ".SS xlb preflight") {
		t.Errorf("man page: %v\n%s", err, man)
	}
}

// TestShippedConfig checks that the default configuration the package
// installs is accepted as it is.
func TestShippedConfig(t *testing.T) {
	bin := buildXLB(t)
	if out, err := exec.Command(bin, "run", "--check", "--config", "../../packaging/xlb.yaml").CombinedOutput(); err != nil {
		t.Errorf("xlb run --check on packaging/xlb.yaml: %v\n%s", err, out)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit (with the test's
// binary in ExecStart, since /usr/bin/xlb is not installed here); any
// warning fails. A unit with an unknown key must be reported, so the test
// can see a mistake.
func TestUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd): the unit is not verified")
	}
	bin := buildXLB(t)
	unit, err := os.ReadFile("../../packaging/xlb.service")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(text string) string {
		p := filepath.Join(t.TempDir(), "xlb.service")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/bin/xlb", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify(string(unit)); out != "" {
		t.Errorf("systemd-analyze verify packaging/xlb.service:\n%s", out)
	}
	if out := verify(strings.Replace(string(unit), "ProtectSystem=", "ProtectSystm=", 1)); !strings.Contains(out, "ProtectSystm") {
		t.Errorf("a misspelt key was not reported: %q", out)
	}
	for _, want := range []string{"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON CAP_IPC_LOCK\n",
		"User=xlb\n", "NoNewPrivileges=yes\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "AF_XDP", "AF_NETLINK", "AF_PACKET"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}
