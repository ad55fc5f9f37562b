package documentdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/source"
)

// Leases holds a mapping's one change stream among the esmd workers that
// share a PostgreSQL store (pgstore.Store implements it; see its Balance):
// one worker reads the stream, the others stand by and take it over once
// its lease expires or it is released.
type Leases interface {
	Balance(ctx context.Context, mapping, worker string, ready []string, ttl time.Duration) (owned map[string]int64, handoff []string, err error)
	Release(ctx context.Context, mapping, worker string, lanes []string) error
	SetPositionsFenced(ctx context.Context, mapping, worker string, positions map[string]string, counters map[string]int64) (lost []string, err error)
}

// ErrLeaseMoved is Poll's error once another esmd worker holds the
// mapping's change stream (this one could not renew its lease in time, or
// a replay reset it): the pipeline restarts, and the next Open waits for
// the lease again.
var ErrLeaseMoved = errors.New("documentdb: the change stream's lease is another esmd worker's now")

// DefaultLeaseTTL is Lease.TTL's default.
const DefaultLeaseTTL = 10 * time.Second

// Lease says how a Poller holds its stream among workers: under Worker's
// name, with leases of TTL, renewed every third of it.
type Lease struct {
	Leases Leases
	Worker string
	TTL    time.Duration
}

// leased is a Poller whose change stream is leased.
type leased struct {
	*Poller
	l       Lease
	mapping string
	lane    string

	mu      sync.Mutex
	counter int64
	renewed time.Time

	moved  context.Context // done once the lease is not this worker's
	move   context.CancelFunc
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// OpenLeased opens cfg's change stream once this worker holds its lease,
// waiting until then (another worker reads it meanwhile) or until ctx is
// done. Every checkpoint is written fenced by the lease; Close releases it.
// A worker that holds the lease keeps it: a standby takes it only once it
// is released or expired, so the stream does not move back and forth as
// workers come and go.
func OpenLeased(ctx context.Context, cfg Config, l Lease) (source.Poller, error) {
	if l.TTL <= 0 {
		l.TTL = DefaultLeaseTTL
	}
	lane := Lane(cfg.Database, cfg.Collection)
	lp := &leased{l: l, mapping: cfg.Mapping, lane: lane}
	for {
		started := time.Now()
		owned, _, err := l.Leases.Balance(ctx, cfg.Mapping, l.Worker, []string{lane}, l.TTL)
		if c, ok := owned[lane]; err == nil && ok {
			lp.counter, lp.renewed = c, started
			break
		}
		if err != nil && ctx.Err() == nil && cfg.Log != nil {
			cfg.Log.Warn("documentdb: lease round failed", "stream", lane, "err", err)
		}
		if backoff.Sleep(ctx, l.TTL/3) != nil {
			return nil, ctx.Err()
		}
	}
	cfg.Positions = fencedPositions{lp: lp, inner: cfg.Positions}
	p, err := Open(ctx, cfg)
	if err != nil {
		lp.release()
		return nil, err
	}
	lp.Poller = p
	lp.moved, lp.move = context.WithCancel(context.Background())
	var rctx context.Context
	rctx, lp.stop = context.WithCancel(context.Background())
	lp.wg.Add(1)
	go lp.renew(rctx)
	return lp, nil
}

// renew renews the lease every third of its time; a lease not renewed
// for its whole time, or found at another counter, has moved.
func (lp *leased) renew(ctx context.Context) {
	defer lp.wg.Done()
	for backoff.Sleep(ctx, lp.l.TTL/3) == nil {
		started := time.Now()
		owned, _, err := lp.l.Leases.Balance(ctx, lp.mapping, lp.l.Worker, []string{lp.lane}, lp.l.TTL)
		lp.mu.Lock()
		switch c, ok := owned[lp.lane]; {
		case err == nil && ok && c == lp.counter:
			lp.renewed = started
		case err == nil || time.Since(lp.renewed) >= lp.l.TTL:
			lp.move()
		}
		lp.mu.Unlock()
	}
}

// Holds implements source.LaneHolder: the stream's lane while its lease
// is this worker's and was renewed less than a lease time ago.
func (lp *leased) Holds(lane string) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lane == lp.lane && lp.moved.Err() == nil && time.Since(lp.renewed) < lp.l.TTL
}

// Leased returns the lane while this worker holds it (pipeline.Leaser).
func (lp *leased) Leased() []string {
	if lp.moved.Err() != nil {
		return nil
	}
	return []string{lp.lane}
}

// Poll implements source.Poller; it returns ErrLeaseMoved once the lease
// moved.
func (lp *leased) Poll(ctx context.Context) ([]source.Record, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(lp.moved, cancel)()
	recs, err := lp.Poller.Poll(pctx)
	if lp.moved.Err() != nil && ctx.Err() == nil {
		return nil, ErrLeaseMoved
	}
	return recs, err
}

// Close closes the stream (writing its checkpoint, fenced) and releases
// the lease, so a standby worker takes the stream over at once.
func (lp *leased) Close() error {
	var err error
	lp.closed.Do(func() {
		lp.stop()
		lp.wg.Wait()
		err = lp.Poller.Close()
		if lp.moved.Err() == nil {
			lp.release()
		}
		lp.move()
	})
	return err
}

func (lp *leased) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = lp.l.Leases.Release(ctx, lp.mapping, lp.l.Worker, []string{lp.lane})
}

// fencedPositions writes the checkpoint only at the lease's counter.
type fencedPositions struct {
	lp    *leased
	inner Positions
}

func (f fencedPositions) Position(ctx context.Context, mapping, lane string) (string, bool, error) {
	return f.inner.Position(ctx, mapping, lane)
}

func (f fencedPositions) SetPosition(ctx context.Context, mapping, lane, pos string) error {
	lp := f.lp
	lp.mu.Lock()
	counter := lp.counter
	lp.mu.Unlock()
	lost, err := lp.l.Leases.SetPositionsFenced(ctx, mapping, lp.l.Worker, map[string]string{lane: pos}, map[string]int64{lane: counter})
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		if lp.move != nil {
			lp.move()
		}
		return fmt.Errorf("checkpoint of %s: %w", lane, ErrLeaseMoved)
	}
	return nil
}
