//go:build unix

package bench

import (
	"os"
	"runtime"
	"syscall"
	"time"
)

// rusageOf reads a waited-for child's CPU time and peak RSS.
func rusageOf(ps *os.ProcessState) *usage {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return &usage{}
	}
	rss := int64(ru.Maxrss)
	if runtime.GOOS != "darwin" {
		rss *= 1024 // kilobytes everywhere but macOS
	}
	return &usage{CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), PeakRSS: rss}
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
