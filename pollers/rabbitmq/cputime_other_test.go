//go:build !unix

package rabbitmq_test

import "time"

func cpuTime() time.Duration { return 0 }
