//go:build unix

package benchtest

import (
	"syscall"
	"time"
)

// CPUTime is the process's user+system CPU time (the GC's background work
// included).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
