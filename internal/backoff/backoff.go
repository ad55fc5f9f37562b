// Package backoff is the one retry delay esmd uses between attempts that
// failed: a delay that doubles from a first value up to a cap, with
// optional jitter, waited on with a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of New when given zero values.
const (
	DefaultInitial = 100 * time.Millisecond
	DefaultMax     = 30 * time.Second
)

// Backoff is the delay before the next attempt. The zero value is not
// usable; use New. Not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	initial, max, next time.Duration
	// Jitter, when set, waits a random duration in [d/2, d) instead of d,
	// so that many loops that failed together do not retry together.
	Jitter bool
}

// New returns a Backoff whose first delay is initial (DefaultInitial when
// zero or less), doubling up to max (DefaultMax when less than initial).
func New(initial, max time.Duration) *Backoff {
	if initial <= 0 {
		initial = DefaultInitial
	}
	if max < initial {
		max = DefaultMax
		if max < initial {
			max = initial
		}
	}
	return &Backoff{initial: initial, max: max, next: initial}
}

// Next returns the delay to wait now and doubles the following one.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(b.next*2, b.max)
	if b.Jitter && d > 1 {
		d = d/2 + rand.N(d/2)
	}
	return d
}

// Reset starts again from the first delay, after a success.
func (b *Backoff) Reset() { b.next = b.initial }

// Wait sleeps for Next(), or returns ctx.Err() when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d, or returns ctx.Err() when ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
