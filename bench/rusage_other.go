//go:build !unix

package bench

import "os"

// rusageOf gives the CPU time of a waited-for child; peak RSS is unknown.
func rusageOf(ps *os.ProcessState) *usage {
	return &usage{CPU: ps.UserTime() + ps.SystemTime()}
}
