package bench

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolChannels is struct ethtool_channels (linux/ethtool.h).
type ethtoolChannels struct {
	cmd                                         uint32
	maxRx, maxTx, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

const ethtoolGChannels = 0x3c // ETHTOOL_GCHANNELS

// channels returns how many queues of ifname receive and transmit now (ETHTOOL_GCHANNELS:
// the combined channels plus the rx-only or tx-only ones): fewer than netlink's queue counts,
// which give what the device allocated. Call it on a thread in the interface's namespace.
func channels(ifname string) (rx, tx int, err error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, 0, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{cmd: ethtoolGChannels}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer // struct ifreq's ifr_data
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&ch)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return 0, 0, fmt.Errorf("ethtool channels of %s: %w", ifname, errno)
	}
	return int(ch.combinedCount + ch.rxCount), int(ch.combinedCount + ch.txCount), nil
}
