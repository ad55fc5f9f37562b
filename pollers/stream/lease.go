package stream

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultLeaseTTL is the default Config.LeaseTTL.
const DefaultLeaseTTL = 10 * time.Second

// Leases shares a mapping's shards among esmd workers, in the style of
// the Kinesis Client Library; pgstore.Store implements it (see its
// Balance for the protocol).
type Leases interface {
	// Balance renews worker's leases and presence, takes free or expired
	// lanes among ready up to its share, and returns the lanes it holds
	// with their counters, and those of them it should hand over.
	Balance(ctx context.Context, mapping, worker string, ready []string, ttl time.Duration) (owned map[string]int64, handoff []string, err error)
	// Release gives lanes up.
	Release(ctx context.Context, mapping, worker string, lanes []string) error
	// SetPositionsFenced writes positions of lanes held at counters, and
	// returns the lanes whose lease was lost (nothing written for them).
	SetPositionsFenced(ctx context.Context, mapping, worker string, positions map[string]string, counters map[string]int64) (lost []string, err error)
	// Positions returns every lane's checkpoint of a mapping.
	Positions(ctx context.Context, mapping string) (map[string]string, error)
}

// LostError is the error of a checkpoint write for lanes whose lease
// another worker holds now: nothing was written for them, and the poller
// stops reading them.
type LostError struct{ Lanes []string }

func (e *LostError) Error() string {
	return "stream: the leases of " + strings.Join(e.Lanes, ", ") + " were lost to another worker"
}

// leaseState is what the lease loop knows.
type leaseState struct {
	mu       sync.Mutex
	counters map[string]int64     // lanes held, and their counters
	handing  map[string]time.Time // lanes being handed over, since
	lost     map[string]bool      // lanes a fenced write found lost
	renewed  time.Time            // when the last successful Balance started
	wake     chan struct{}
}

func newLeaseState() *leaseState {
	return &leaseState{counters: map[string]int64{}, handing: map[string]time.Time{}, lost: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// held returns the counters of the lanes of positions; lanes not held are
// absent (their write is refused as lost).
func (l *leaseState) held(positions map[string]string) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(positions))
	for lane := range positions {
		if c, ok := l.counters[lane]; ok {
			out[lane] = c
		}
	}
	return out
}

func (l *leaseState) markLost(lanes []string) {
	l.mu.Lock()
	for _, lane := range lanes {
		l.lost[lane] = true
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// fenced is the Positions of a poller with leases: reads go to the store,
// writes are fenced by the leases' counters.
type fenced struct {
	p     *Poller
	inner Positions
}

func (f fenced) Position(ctx context.Context, mapping, lane string) (string, bool, error) {
	return f.inner.Position(ctx, mapping, lane)
}

func (f fenced) SetPosition(ctx context.Context, mapping, lane, pos string) error {
	return f.SetPositions(ctx, mapping, map[string]string{lane: pos})
}

func (f fenced) SetPositions(ctx context.Context, mapping string, positions map[string]string) error {
	p := f.p
	lost, err := p.c.Leases.SetPositionsFenced(ctx, mapping, p.c.Worker, positions, p.leases.held(positions))
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		p.leases.markLost(lost)
		return &LostError{Lanes: lost}
	}
	return nil
}

// lease is the lease loop: a Balance every third of the lease time (or at
// once when a write found a lease lost), then readers stopped and started
// to match what the worker holds.
func (p *Poller) lease() {
	defer p.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.leases.wake:
		}
		started := time.Now()
		if err := p.balance(); err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.c.Log.Warn("stream: lease renewal failed", "stream", p.c.Name, "err", err)
			// Leases not renewed for their whole time may be another
			// worker's by now: stop reading them (their writes would be
			// refused anyway).
			if !p.renewedWithin() {
				p.stopLanes(p.heldLanes(), true)
			}
		} else {
			p.leases.mu.Lock()
			p.leases.renewed = started
			p.leases.mu.Unlock()
		}
		t.Reset(p.c.LeaseTTL / 3)
	}
}

// renewedWithin reports whether the leases were renewed less than the
// lease time ago.
func (p *Poller) renewedWithin() bool {
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	return time.Since(p.leases.renewed) < p.c.LeaseTTL
}

// Holds implements source.LaneHolder. Without leases the poller holds
// every lane. With leases it holds a lane while it holds its lease, and no
// lane once its leases were last renewed a lease time ago or more: a
// worker that was paused (SIGSTOP, a frozen VM) may have lost them all,
// and invokes nothing it read before until its next renewal says what it
// still holds; a lane it was asked about meanwhile is then read again
// from its checkpoint, since the batch asked about was left unfinished.
func (p *Poller) Holds(lane string) bool {
	if p.leases == nil {
		return true
	}
	st := p.leases
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.counters[lane]; !ok || st.lost[lane] {
		return false
	}
	if time.Since(st.renewed) < p.c.LeaseTTL {
		return true
	}
	// The batch asked about stays unfinished: the lane is read again from
	// its checkpoint once the next renewal says it is still held.
	st.lost[lane] = true
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return false
}

// heldLanes returns the lanes the worker holds.
func (p *Poller) heldLanes() []string {
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	return slices.Collect(maps.Keys(p.leases.counters))
}

// ready returns the shards to share: listed, not read to their end
// (ShardEnd stored), with every listed parent read to its end.
func (p *Poller) ready(stored map[string]string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id, sh := range p.shards {
		if stored[id] == ShardEnd {
			continue
		}
		ok := true
		for _, par := range sh.parents {
			if _, listed := p.shards[par]; listed && stored[par] != ShardEnd {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// balance runs one round of the lease loop.
func (p *Poller) balance() error {
	stored, err := p.c.Leases.Positions(p.ctx, p.c.Mapping)
	if err != nil {
		return err
	}
	owned, handoff, err := p.c.Leases.Balance(p.ctx, p.c.Mapping, p.c.Worker, p.ready(stored), p.c.LeaseTTL)
	if err != nil {
		return err
	}
	st := p.leases
	st.mu.Lock()
	// Lost: held before and not now, held at another counter (the lease
	// moved meanwhile: after expiry, or a replay reset the positions), or
	// a write was refused. A lane held again is read afresh from its
	// stored position.
	var lost []string
	for lane, c := range st.counters {
		if now, ok := owned[lane]; !ok || now != c || st.lost[lane] {
			lost = append(lost, lane)
		}
	}
	clear(st.lost)
	st.mu.Unlock()
	if len(lost) > 0 {
		p.c.Log.Info("stream: shards leased by another worker now", "stream", p.c.Name, "shards", lost)
		p.stopLanes(lost, true)
	}
	// Hand over: stop reading, store the positions of what is done, and
	// release once nothing is in flight (or the lease time passed).
	if len(handoff) > 0 {
		p.stopLanes(handoff, false)
		_, _ = p.writeDirty() // logged; what fails is read again by the next holder
		var release []string
		st.mu.Lock()
		for _, lane := range handoff {
			since, ok := st.handing[lane]
			if !ok {
				since = time.Now()
				st.handing[lane] = since
			}
			if p.tracker.Pending(lane) == 0 || time.Since(since) > p.c.LeaseTTL {
				release = append(release, lane)
			}
		}
		st.mu.Unlock()
		if len(release) > 0 {
			if err := p.c.Leases.Release(p.ctx, p.c.Mapping, p.c.Worker, release); err != nil {
				return err
			}
			p.c.Log.Info("stream: shards handed over", "stream", p.c.Name, "shards", release)
			p.forget(release)
		}
	}
	// Read what is held.
	st.mu.Lock()
	for lane, c := range owned {
		if slices.Contains(handoff, lane) {
			continue
		}
		delete(st.handing, lane)
		st.counters[lane] = c
	}
	held := slices.Collect(maps.Keys(st.counters))
	st.mu.Unlock()
	var start []*shard
	p.mu.Lock()
	for _, lane := range held {
		sh := p.shards[lane]
		if sh == nil || slices.Contains(handoff, lane) || sh.stopped != nil && !closed(sh.stopped) || closed(sh.finished) {
			continue
		}
		start = append(start, sh)
	}
	p.mu.Unlock()
	// A reader stopped for a handover that did not happen (the share grew
	// back) reads again from the stored position: what it tracked is
	// forgotten (doneMu before p.mu, as Done takes them).
	p.doneMu.Lock()
	for _, sh := range start {
		if sh.stopped != nil {
			p.tracker.Forget(sh.id)
		}
	}
	p.doneMu.Unlock()
	p.mu.Lock()
	for _, sh := range start {
		p.startReaderLocked(sh, p.ctx)
	}
	p.mu.Unlock()
	return nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stopLanes stops the readers of lanes and waits for them; lost lanes are
// forgotten at once (their positions can no longer be written).
func (p *Poller) stopLanes(lanes []string, lost bool) {
	var wait []chan struct{}
	p.mu.Lock()
	for _, lane := range lanes {
		if sh := p.shards[lane]; sh != nil && sh.cancel != nil {
			sh.cancel()
			sh.read.Store(false)
			wait = append(wait, sh.stopped)
		}
	}
	p.mu.Unlock()
	for _, c := range wait {
		<-c
	}
	if lost {
		p.forget(lanes)
	}
}

// forget drops lanes the worker no longer holds: their counters, their
// positions not yet written, and their tracking.
func (p *Poller) forget(lanes []string) {
	p.leases.mu.Lock()
	for _, lane := range lanes {
		delete(p.leases.counters, lane)
		delete(p.leases.handing, lane)
	}
	p.leases.mu.Unlock()
	p.doneMu.Lock()
	for _, lane := range lanes {
		delete(p.dirty, lane)
		p.tracker.Forget(lane)
	}
	p.doneMu.Unlock()
}

// releaseAll gives up every lease when the poller closes, after its
// positions were written: the other workers take the shards at their next
// Balance instead of after the lease time.
func (p *Poller) releaseAll() {
	lanes := p.heldLanes()
	if len(lanes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.c.Leases.Release(ctx, p.c.Mapping, p.c.Worker, lanes); err != nil {
		p.c.Log.Warn("stream: releasing leases failed; they expire instead", "stream", p.c.Name, "err", err)
	}
}

// Leased returns the shards this worker holds a lease on (nil without
// leases), sorted.
func (p *Poller) Leased() []string {
	if p.leases == nil {
		return nil
	}
	out := p.heldLanes()
	slices.Sort(out)
	return out
}

// errorLost reports whether err is only a LostError.
func errorLost(err error) bool {
	var le *LostError
	return errors.As(err, &le)
}
