package dataplane

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// allowedCPUs returns the CPUs this process may run on, in ascending order.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("sched_getaffinity: empty cpu set")
	}
	return cpus, nil
}

// pinThread locks the calling goroutine to its OS thread and that thread to cpu. The caller
// must call runtime.UnlockOSThread when it is done (or exit the goroutine, which ends the
// thread: a pinned thread is not handed back to the scheduler).
func pinThread(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to cpu %d: %w", cpu, err)
	}
	return nil
}

// queueCount returns the number of receive queues of the interface, as sysfs lists them.
func queueCount(ifname string) (int, error) {
	m, err := filepath.Glob(filepath.Join("/sys/class/net", ifname, "queues", "rx-*"))
	if err != nil {
		return 0, fmt.Errorf("list queues of %s: %w", ifname, err)
	}
	if len(m) == 0 {
		return 1, nil
	}
	return len(m), nil
}

// SetThreadedNAPI turns threaded NAPI on or off for an interface (writes
// /sys/class/net/IF/threaded). On veth it moves the receive work that XDP does off the
// sending CPU onto a napi/IF-* kernel thread that can be pinned; write it after the XDP
// program is attached (veth creates its NAPI instances then).
func SetThreadedNAPI(ifname string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	p := filepath.Join("/sys/class/net", ifname, "threaded")
	if err := os.WriteFile(p, []byte(v), 0); err != nil {
		return fmt.Errorf("threaded napi on %s: %w", ifname, err)
	}
	return nil
}
