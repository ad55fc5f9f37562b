package batcher

import "time"

// Clock is the Batcher's time source: Now stamps every record Add buffers
// and every Done, and says when batching windows, the linger and
// tumbling-window grace have passed; NewTimer is what Next waits on while
// nothing is ready. The default is the real clock (time.Now and
// time.NewTimer). A Clock must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of a *time.Timer that Next uses: a channel that
// receives once the timer fires, Reset and Stop with time.Timer's meaning.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// WithClock makes the Batcher read time from c rather than the real clock,
// so that a test can drive batching windows, idle-lane expiry and
// tumbling-window grace step by step.
func WithClock(c Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return nil
		}
		cfg.clock = c
		return cfg.once("WithClock")
	}
}

// realTimer adapts a *time.Timer; a one-pointer struct, so making it a
// Timer does not allocate.
type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
func (r realTimer) Stop() bool                 { return r.t.Stop() }

// now returns the Batcher's time. Without WithClock it is a direct call of
// time.Now, so the hot path (Add, AddAll, Next, Done) pays no indirect call.
func (b *Batcher) now() time.Time {
	if b.cfg.clock == nil {
		return time.Now()
	}
	return b.cfg.clock.Now()
}

// newTimer returns a timer of the Batcher's clock.
func (b *Batcher) newTimer(d time.Duration) Timer {
	if b.cfg.clock == nil {
		return realTimer{time.NewTimer(d)}
	}
	return b.cfg.clock.NewTimer(d)
}
