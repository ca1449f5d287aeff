package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

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

// ErrSysfsNamespace: sysfs shows the network namespace it was mounted in, and the interface
// there is not the one the caller means (the caller runs in another namespace).
var ErrSysfsNamespace = errors.New("interface not visible in this sysfs (another network namespace)")

// SetThreadedNAPI turns threaded NAPI on or off for an interface (writes
// /sys/class/net/IF/threaded). On veth it moves the receive work that XDP does off the
// sending CPU onto a napi/IF-* kernel thread that can be pinned; write it after the XDP
// program is attached (veth creates its NAPI instances then). ifindex and mac identify the
// interface: sysfs shows the namespace it was mounted in, so from a thread in another
// namespace the same name may be another interface, and then nothing is written.
func SetThreadedNAPI(ifname string, ifindex int, mac [6]byte, on bool) error {
	dir := filepath.Join("/sys/class/net", ifname)
	idx, err1 := os.ReadFile(filepath.Join(dir, "ifindex"))
	addr, err2 := os.ReadFile(filepath.Join(dir, "address"))
	want := net.HardwareAddr(mac[:]).String()
	if err1 != nil || err2 != nil || strings.TrimSpace(string(idx)) != strconv.Itoa(ifindex) ||
		strings.TrimSpace(string(addr)) != want {
		return fmt.Errorf("threaded napi on %s: %w", ifname, ErrSysfsNamespace)
	}
	v := "0"
	if on {
		v = "1"
	}
	p := filepath.Join(dir, "threaded")
	if err := os.WriteFile(p, []byte(v), 0); err != nil {
		return fmt.Errorf("threaded napi on %s: %w", ifname, err)
	}
	return nil
}
