package testenv

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// fatalTB records the first Fatalf and ends its goroutine, as testing.T
// does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper()                  {}
func (f *fatalTB) Context() context.Context { return context.Background() }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs fn with a fatalTB and returns its Fatalf message ("" when
// fn returned).
func failure(fn func(testing.TB)) string {
	tb := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		ready := func(context.Context) error {
			if el := time.Since(start); el < time.Second {
				return fmt.Errorf("only %v", el)
			}
			return nil
		}
		if msg := failure(func(tb testing.TB) { Eventually(tb, 2*time.Second, ready) }); msg != "" {
			t.Fatalf("met condition reported: %s", msg)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("returned %v after the condition was met at 1s", el)
		}

		start = time.Now()
		msg := failure(func(tb testing.TB) { Eventually(tb, 500*time.Millisecond, ready) })
		if !strings.Contains(msg, "within 500ms: only 500ms") {
			t.Fatalf("failure %q does not carry the last error", msg)
		}
		if el := time.Since(start); el != 500*time.Millisecond {
			t.Fatalf("gave up after %v, want 500ms", el)
		}

		msg = failure(func(tb testing.TB) { EventuallyTrue(tb, time.Second, "the thing", func() bool { return false }) })
		if !strings.Contains(msg, "waiting for the thing") {
			t.Fatalf("failure %q does not say what was awaited", msg)
		}
		if msg := failure(func(tb testing.TB) { EventuallyTrue(tb, time.Second, "x", func() bool { return true }) }); msg != "" {
			t.Fatalf("true condition reported: %s", msg)
		}
	})
}

func TestConsistently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		if msg := failure(func(tb testing.TB) {
			Consistently(tb, time.Second, func(context.Context) error { calls++; return nil })
		}); msg != "" {
			t.Fatalf("condition that held reported: %s", msg)
		}
		if el := time.Since(start); el != time.Second || calls < 2 {
			t.Fatalf("checked %d times over %v, want the whole second", calls, el)
		}

		start = time.Now()
		msg := failure(func(tb testing.TB) {
			Consistently(tb, time.Second, func(context.Context) error {
				if time.Since(start) >= 300*time.Millisecond {
					return errors.New("it happened")
				}
				return nil
			})
		})
		if !strings.Contains(msg, "after 300ms") || !strings.Contains(msg, "it happened") {
			t.Fatalf("failure %q", msg)
		}
	})
}

func TestPollPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		stop := errors.New("gone")
		if err := poll(time.Minute, PollInterval, func(context.Context) error { return permanent{stop} }); err != stop {
			t.Fatalf("poll = %v, want the permanent error", err)
		}
		if time.Since(start) != 0 {
			t.Fatal("poll went on after a permanent error")
		}
	})
}
