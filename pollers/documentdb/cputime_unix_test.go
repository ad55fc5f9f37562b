//go:build unix

package documentdb_test

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time: the benchmark reports it
// per event next to wall time, which other processes' load inflates more.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
