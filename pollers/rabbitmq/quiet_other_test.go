//go:build !linux

package rabbitmq_test

import "time"

// quiet has no CPU figures to wait on outside Linux.
func quiet(time.Duration) time.Duration { return 0 }

// brokerCPU is unknown outside Linux.
func brokerCPU() time.Duration { return 0 }
