package pipeline

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Sharer is a store that several esmd workers share (pgstore.Store, found
// in source.Env.Store): it splits a queue mapping's concurrency cap among
// the workers that run the mapping, so that the cap holds across all of
// them together.
type Sharer interface {
	// ConcurrencyShare renews worker's presence on mapping for ttl and
	// returns its share of limit concurrent invocations among the workers
	// present: an even split, the remainder going one each to the first
	// workers by id. Shares add up to limit; a worker may get 0.
	ConcurrencyShare(ctx context.Context, mapping, worker string, limit int, ttl time.Duration) (int, error)
	// LeaveShare ends worker's presence on mapping: the others take its
	// share at their next ConcurrencyShare.
	LeaveShare(ctx context.Context, mapping, worker string) error
}

// limiter bounds the invocations of a mapping in flight; its limit may
// change while it is used. A lower limit does not cancel what is in flight:
// nothing new starts until fewer than the new limit are.
type limiter struct {
	mu      sync.Mutex
	n       int // in flight
	limit   int
	waiting int           // goroutines in acquire
	changed chan struct{} // closed (and replaced) when n or limit change
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: limit, changed: make(chan struct{})}
}

// signal wakes the waiters; l.mu is held.
func (l *limiter) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// acquire waits for room for one more invocation, or for ctx.
func (l *limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	l.waiting++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
	}()
	return l.wait(ctx, func() bool {
		if l.n < l.limit {
			l.n++
			return true
		}
		return false
	})
}

// keep reports whether a holder of a slot may go on to another invocation
// without releasing it: the limit (which may have been lowered) still
// leaves it room, and nobody waits in acquire for one.
func (l *limiter) keep() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n <= l.limit && l.waiting == 0
}

func (l *limiter) release() {
	l.mu.Lock()
	l.n--
	l.signal()
	l.mu.Unlock()
}

func (l *limiter) set(limit int) {
	l.mu.Lock()
	if limit != l.limit {
		l.limit = limit
		l.signal()
	}
	l.mu.Unlock()
}

// await waits until ok(limit) holds, or for ctx.
func (l *limiter) await(ctx context.Context, ok func(limit int) bool) error {
	return l.wait(ctx, func() bool { return ok(l.limit) })
}

// wait waits until cond, called with l.mu held, returns true, or for ctx.
func (l *limiter) wait(ctx context.Context, cond func() bool) error {
	for {
		l.mu.Lock()
		if cond() {
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// concurrencyCap is the cap of concurrent invocations of a queue mapping
// that holds across workers: ScalingConfig.MaximumConcurrency, else the
// source's fixed one (Descriptor.Concurrency); 0 when it has none.
func (r *Runner) concurrencyCap(m *esm.Mapping) int {
	if r.Source.Delivery != source.Queue {
		return 0
	}
	if sc := m.Config.ScalingConfig; sc != nil && sc.MaximumConcurrency != nil && *sc.MaximumConcurrency > 0 {
		return int(*sc.MaximumConcurrency)
	}
	return r.Source.Concurrency
}

func (r *Runner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// sharer returns the store that splits a mapping's cap among workers, with
// this worker's id and the lease time, or nil when esmd runs alone (the
// embedded store).
func (r *Runner) sharer() (Sharer, string, time.Duration) {
	env := r.Env
	if env == nil || env.Worker == "" || env.LeaseTTL <= 0 {
		return nil, "", 0
	}
	s, ok := env.Store.(Sharer)
	if !ok {
		return nil, "", 0
	}
	return s, env.Worker, env.LeaseTTL
}

// runShared runs a queue mapping whose concurrency cap is split among
// the workers (Sharer). Every third of the lease time the worker renews
// its presence and reads its share; its in-flight limit follows it. With a
// share of 0 the worker stops the mapping's pipeline (handing back what it
// held, as at any stop) and starts it again when its share is above 0.
func (r *Runner) runShared(ctx context.Context, m *esm.Mapping, rep esm.Reporter, sh Sharer, worker string, ttl time.Duration, limit, cap int) error {
	lim := newLimiter(0)
	keep, stopKeep := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.keepShare(keep, m, sh, worker, ttl, limit, cap, lim)
	}()
	defer func() {
		stopKeep()
		wg.Wait()
		// Leaving lets the others take this worker's share at their next
		// renewal instead of after the lease time.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := sh.LeaveShare(lctx, m.UUID, worker); err != nil {
			r.logger().Warn("leave the mapping's concurrency share", "uuid", m.UUID, "err", err)
		}
	}()
	for {
		if err := lim.await(ctx, func(n int) bool { return n > 0 }); err != nil {
			return nil // stopped
		}
		runCtx, cancel := context.WithCancel(ctx)
		var zero sync.WaitGroup
		zero.Add(1)
		go func() {
			defer zero.Done()
			if lim.await(runCtx, func(n int) bool { return n == 0 }) == nil {
				cancel()
			}
		}()
		err := r.run(runCtx, m, rep, lim)
		cancel()
		zero.Wait()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// keepShare renews the worker's presence every third of ttl and sets lim
// to its share (at most limit). When the presence could not be renewed
// for ttl, the others count the worker as gone and take its share: its
// limit drops to 0.
func (r *Runner) keepShare(ctx context.Context, m *esm.Mapping, sh Sharer, worker string, ttl time.Duration, limit, cap int, lim *limiter) {
	var renewed time.Time
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, ttl/3)
		n, err := sh.ConcurrencyShare(cctx, m.UUID, worker, cap, ttl)
		cancel()
		switch {
		case err == nil:
			renewed = start
			lim.set(min(n, limit))
		case ctx.Err() != nil:
			return
		default:
			r.logger().Warn("renew the mapping's concurrency share", "uuid", m.UUID, "err", err)
			if time.Since(renewed) >= ttl {
				lim.set(0)
			}
		}
		t.Reset(ttl / 3)
	}
}
