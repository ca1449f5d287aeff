package health

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns returns a hook for Options.Netns that runs each probe inside the network namespace
// at path (e.g. "/run/netns/NAME" or "/proc/PID/ns/net"). Each call runs fn on a fresh
// goroutine locked to its OS thread, switched into the namespace and back; fn's goroutine is
// waited for, so nothing outlives the probe. If the thread cannot be switched back it is not
// unlocked, so the runtime retires it instead of reusing it in the wrong namespace.
func InNetns(path string) func(fn func() error) error {
	return func(fn func() error) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			err, restored := runInNetns(path, fn)
			if restored {
				runtime.UnlockOSThread()
			}
			errc <- err
		}()
		return <-errc
	}
}

// runInNetns switches the calling (locked) thread into path's namespace, runs fn and
// switches back; restored is false when the thread may be left in the wrong namespace.
func runInNetns(path string, fn func() error) (err error, restored bool) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open own netns: %w", err), true
	}
	defer unix.Close(orig)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err), true
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err), true
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("leave netns %s: %w", path, err), false
	}
	return ferr, true
}
