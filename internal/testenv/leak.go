package testenv

import (
	"context"
	"runtime"
	"strings"
	"time"
)

// ignoredStacks are goroutines that belong to the runtime, the testing
// package or process-wide singletons, not to code under test.
var ignoredStacks = []string{
	"testing.(*M).",
	"testing.tRunner",
	"testing.runTests",
	"testing.(*T).Run",
	"runtime.goexit0",
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
	"runtime/trace.",
	"internal/testenv.Main", // this goroutine
	"testenv.Leaks",
}

// Leaks waits up to timeout for goroutines started by the tests to end and
// returns the stacks of those still running ("" when none).
func Leaks(timeout time.Duration) string {
	var leaks []string
	_ = poll(timeout, 50*time.Millisecond, func(context.Context) error {
		if leaks = leaked(); len(leaks) > 0 {
			return errNotYet
		}
		return nil
	})
	return strings.Join(leaks, "\n\n")
}

func leaked() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if g == "" {
			continue
		}
		ignore := false
		for _, s := range ignoredStacks {
			if strings.Contains(g, s) {
				ignore = true
				break
			}
		}
		if !ignore {
			out = append(out, g)
		}
	}
	return out
}
