package batcher

import (
	"context"
	"sync"
	"testing"
	"time"
)

// manualClock is a Clock that moves only when Advance is called. armed is
// signalled each time a timer is set, so a test knows that a Next is
// waiting on the clock before it moves it.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
	armed  chan struct{}
}

func newManualClock(now time.Time) *manualClock {
	return &manualClock{now: now, armed: make(chan struct{}, 1)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) NewTimer(d time.Duration) Timer {
	t := &manualTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

// Advance moves the clock by d and fires the timers that are due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireIfDue()
	}
}

// waitArmed waits until a timer was set since the last call.
func (c *manualClock) waitArmed(t *testing.T) {
	t.Helper()
	select {
	case <-c.armed:
	case <-time.After(10 * time.Second):
		t.Fatal("no timer was set on the clock: Next is not waiting on it")
	}
}

// manualTimer is a timer of a manualClock; its fields are guarded by the
// clock's mutex.
type manualTimer struct {
	c  *manualClock
	ch chan time.Time
	at time.Time
	on bool
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.on
	select { // as time.Timer since Go 1.23: no stale value after Reset
	case <-t.ch:
	default:
	}
	t.at, t.on = t.c.now.Add(d), true
	t.fireIfDue()
	select {
	case t.c.armed <- struct{}{}:
	default:
	}
	return was
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.on
	t.on = false
	return was
}

func (t *manualTimer) fireIfDue() {
	if t.on && !t.at.After(t.c.now) {
		t.on = false
		select {
		case t.ch <- t.c.now:
		default:
		}
	}
}

// TestWithClock: an injected clock drives everything time decides: Next
// waits on its timer until the batching window of the clock's time has
// passed, and the window after Done is measured on it.
func TestWithClock(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	clk := newManualClock(t0)
	b := newB(t, Policy{BatchSize: 10, Window: 5 * time.Second}, sqsEnv, WithClock(clk))
	if _, err := New(Policy{BatchSize: 1}, sqsEnv, WithClock(clk), WithClock(clk)); err == nil {
		t.Error("WithClock given twice accepted")
	}
	type res struct {
		bt  *Batch
		err error
	}
	next := func() chan res {
		c := make(chan res, 1)
		go func() {
			bt, err := b.Next(context.Background())
			c <- res{bt, err}
		}()
		return c
	}

	mustAdd(t, b, rec("q", "", 1, 10))
	got := next()
	clk.waitArmed(t)
	clk.Advance(4 * time.Second)
	if bt := tryNext(b); bt != nil {
		t.Fatalf("released %s at 4s, inside the 5s window", ids(bt))
	}
	clk.Advance(time.Second)
	r := <-got
	if r.err != nil || ids(r.bt) != "1" {
		t.Fatalf("Next = %s, %v; want record 1 once the window passed", ids(r.bt), r.err)
	}

	// AfterInvoke: the next window opens at Done (t0+7s), not at the add.
	mustAdd(t, b, rec("q", "", 2, 10))
	clk.Advance(2 * time.Second)
	mustDone(t, b, r.bt, "")
	got = next()
	clk.waitArmed(t)
	clk.Advance(4 * time.Second)
	if bt := tryNext(b); bt != nil {
		t.Fatalf("released %s 4s after Done, inside the window", ids(bt))
	}
	clk.Advance(time.Second)
	if r := <-got; r.err != nil || ids(r.bt) != "2" {
		t.Fatalf("Next = %s, %v; want record 2 5s after Done", ids(r.bt), r.err)
	}
	if now := clk.Now(); !now.Equal(t0.Add(12 * time.Second)) {
		t.Fatalf("clock at %v", now)
	}
}
