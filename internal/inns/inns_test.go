package inns

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestDoWithoutNamespace(t *testing.T) {
	ran := false
	if err := Do(netns.None(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do(None) = %v, ran %v", err, ran)
	}
	boom := errors.New("boom")
	if err := Do(netns.None(), func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v", err)
	}
}

func TestDoRefusesNonNamespace(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ran := false
	err = Do(netns.NsHandle(f.Fd()), func() error { ran = true; return nil })
	if err == nil || ran || !strings.Contains(err.Error(), "enter namespace") {
		t.Errorf("Do(/dev/null) = %v, ran %v", err, ran)
	}
	if err := DoPath("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Error("DoPath of a missing file succeeded")
	}
}

// TestDoSwitchesAndRestores runs fn in a new namespace and checks the
// thread is back in its own afterwards (root only).
func TestDoSwitchesAndRestores(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // switches this thread into it
	if err == nil {
		err = netns.Set(orig)
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	defer ns.Close()
	var inside bool
	err = Do(ns, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(ns)
		return nil
	})
	if err != nil || !inside {
		t.Fatalf("Do: %v, inside the namespace: %v", err, inside)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(orig) {
		t.Error("the thread was left in the namespace")
	}
}
