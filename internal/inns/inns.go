// Package inns runs a function inside a network namespace: the one place
// the project switches a thread into a namespace and back (the lab's
// namespaces, the resolver of a namespace, health probes from a namespace).
package inns

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on the calling goroutine's OS thread switched into the network
// namespace ns, then switches back. A closed handle (netns.None()) runs fn
// where the thread is. Sockets made inside fn stay in the namespace; fn must
// not start goroutines that expect to run there (they run on other threads).
// If the thread cannot be switched back it stays locked, so the runtime ends
// it with the goroutine instead of reusing it in the wrong namespace.
func Do(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("leave namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// DoPath is Do for the namespace at path (e.g. "/run/netns/NAME" or
// "/proc/PID/ns/net").
func DoPath(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer ns.Close()
	return Do(ns, fn)
}
