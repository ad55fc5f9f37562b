//go:build !unix

package bench

import (
	"os"
	"time"
)

// rusageOf gives the CPU time of a waited-for child; peak RSS is unknown.
func rusageOf(ps *os.ProcessState) *usage {
	return &usage{CPU: ps.UserTime() + ps.SystemTime()}
}

// selfCPU is unknown here: harness CPU is left out.
func selfCPU() time.Duration { return 0 }
