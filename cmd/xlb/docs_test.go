package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestManPageHasEveryFlag checks that the man page lists every command and
// every flag the commands define.
func TestManPageHasEveryFlag(t *testing.T) {
	var man strings.Builder
	if err := cmdMan(&man); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range docCommands() {
		if !strings.Contains(man.String(), ".SS xlb "+c.name+"\n") {
			t.Errorf("man page lacks command %s", c.name)
		}
		for _, f := range flagsOf(c) {
			n++
			if !strings.Contains(man.String(), ".BR \\-\\-"+strings.ReplaceAll(f.name, "-", "\\-")) {
				t.Errorf("man page lacks %s --%s", c.name, f.name)
			}
		}
	}
	if fs := flagsOf(docCommands()[0]); len(fs) < 5 || fs[1].name != "config" || fs[1].arg != "FILE" {
		t.Errorf("run's flags: %+v", fs)
	}
	if n < 20 {
		t.Errorf("only %d flags found over all commands", n)
	}
}

// TestCompletions sources the generated bash completion into bash and asks
// it to complete, and syntax-checks the zsh and fish ones where installed.
func TestCompletions(t *testing.T) {
	gen := func(shell string) string {
		var b strings.Builder
		if err := cmdCompletion([]string{shell}, &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	for words, want := range map[string]string{
		"xlb pre":           "preflight",
		"xlb run --c":       "--check --config",
		"xlb preflight --n": "--netns --no-probe",
		"xlb completion f":  "fish",
	} {
		script := gen("bash") + "\nCOMP_WORDS=(" + words + "); COMP_CWORD=" +
			string(rune('0'+strings.Count(words, " "))) + "; _xlb; echo \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("bash completes %q to %q (%v), want %q", words, out, err, want)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		if _, err := exec.LookPath(sh); err != nil {
			t.Logf("%s not installed: its completion is not syntax-checked", sh)
			continue
		}
		// fish -n -c reports a parse error on stderr but exits 0: any output is a failure.
		if out, err := exec.Command(sh, "-n", "-c", gen(sh)).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
	if err := cmdCompletion([]string{"tcsh"}, &strings.Builder{}); err == nil {
		t.Error("an unknown shell must be refused")
	}
}
