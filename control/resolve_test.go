package control

import (
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// TestRoutesReportsNetlinkErrors: what the kernel could not list is named
// in Routes' error instead of being left out silently.
func TestRoutesReportsNetlinkErrors(t *testing.T) {
	k := NewKernelResolver()
	k.links[1<<30] = true // an interface that does not exist
	if _, err := k.Routes(); err == nil || !strings.Contains(err.Error(), "interface 1073741824") {
		t.Errorf("Routes with a vanished interface: %v, want an error naming it", err)
	}

	// A namespace that cannot be entered (not a namespace at all).
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k = NewKernelResolverIn(netns.NsHandle(f.Fd()))
	if _, err := k.Routes(); err == nil || !strings.Contains(err.Error(), "enter namespace") {
		t.Errorf("Routes in a namespace it cannot enter: %v, want the setns error", err)
	}
}
