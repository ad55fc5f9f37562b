//go:build !unix

package batcher

import "time"

func cpuTime() time.Duration { return 0 }
