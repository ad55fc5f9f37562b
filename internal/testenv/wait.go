package testenv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The one set of wait helpers of esmd's tests. A test waits for something
// to happen with Eventually (or EventuallyTrue), never with a sleep "long
// enough"; a negative check ("nothing happens while ...") that needs a
// pause uses Consistently, kept short, with a comment saying why. Inside a
// testing/synctest bubble they run on the bubble's fake clock.

// PollInterval is how often the helpers check their condition.
const PollInterval = 20 * time.Millisecond

// Eventually polls cond every PollInterval until it returns nil or within
// passes, then fails t with cond's last error. cond's context ends when
// within passes.
func Eventually(t testing.TB, within time.Duration, cond func(context.Context) error) {
	t.Helper()
	if err := poll(within, PollInterval, cond); err != nil {
		t.Fatalf("condition not met within %v: %v", within, err)
	}
}

// EventuallyTrue is Eventually for a condition without an error to
// report: what names what is awaited ("every record delivered").
func EventuallyTrue(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll(within, PollInterval, func(context.Context) error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}

var errNotYet = errors.New("not yet")

// Poll is Eventually for a caller that makes its own assertion afterwards
// (to report what it collected, say): it polls cond every PollInterval and
// returns nil once cond does, or cond's last error when within passes.
func Poll(within time.Duration, cond func(context.Context) error) error {
	return poll(within, PollInterval, cond)
}

// Consistently checks cond every PollInterval for the whole of during and
// fails t as soon as it returns an error: a negative check, such as
// "nothing is consumed while the mapping is disabled". The pause is the
// check's cost: keep during short and say in a comment why the check needs
// it. cond's context is the test's.
func Consistently(t testing.TB, during time.Duration, cond func(context.Context) error) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	end := time.NewTimer(during)
	defer end.Stop()
	for {
		if err := cond(ctx); err != nil {
			t.Fatalf("condition broken after %v (checked for %v): %v", time.Since(start).Round(time.Millisecond), during, err)
		}
		select {
		case <-end.C:
			return
		case <-time.After(PollInterval):
		}
	}
}

// permanent marks a condition's error that no later poll can cure: poll
// returns it at once.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// poll calls cond every interval until it returns nil (poll returns nil),
// timeout passes (poll returns cond's last error) or cond returns a
// permanent error (poll returns what it wraps).
func poll(timeout, interval time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(interval):
		}
	}
}
