package health

import "github.com/xlb-dev/xlb/internal/inns"

// InNetns returns a hook for Options.Netns that runs each probe inside the network namespace
// at path (e.g. "/run/netns/NAME" or "/proc/PID/ns/net"), on the probe's own OS thread
// switched into the namespace and back.
func InNetns(path string) func(fn func() error) error {
	return func(fn func() error) error { return inns.DoPath(path, fn) }
}
