package stream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// worker is a Poller with leases that acknowledges everything it reads,
// as a pipeline would, and remembers what it read.
type worker struct {
	p      *stream.Poller
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	read   map[string][]string // lane -> bodies, in order
}

func startWorker(t *testing.T, f *fake, leases stream.Leases, positions stream.Positions, id string) *worker {
	t.Helper()
	c := stream.Config{}
	c.Mapping = "m"
	c.EmptyWait, c.MaxWait, c.ListInterval = time.Millisecond, 5*time.Millisecond, 10*time.Millisecond
	c.Positions, c.Leases, c.Worker, c.LeaseTTL = positions, leases, id, time.Second
	p, err := stream.New(context.Background(), f, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{p: p, cancel: cancel, done: make(chan struct{}), read: map[string][]string{}}
	go func() {
		defer close(w.done)
		for {
			recs, err := p.Poll(ctx)
			if err != nil {
				return
			}
			w.mu.Lock()
			for _, r := range recs {
				w.read[r.Lane] = append(w.read[r.Lane], string(r.Data))
			}
			w.mu.Unlock()
			_ = p.Ack(ctx, recs, nil)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *worker) stop() {
	w.cancel()
	<-w.done
	w.p.Close()
}

func (w *worker) bodies() map[string][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]string{}
	for l, b := range w.read {
		out[l] = slices.Clone(b)
	}
	return out
}

func leaseStore(t *testing.T) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), testenv.PostgreSQLDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SaveMapping(t.Context(), "m", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	return s
}

func eightShards(per int) (*fake, int) {
	f := newFake()
	for i := range 8 {
		id := fmt.Sprintf("shard-%d", i)
		f.shard(id)
		for k := range per {
			f.put(id, fmt.Sprintf("%s/%d", id, k))
		}
	}
	return f, 8 * per
}

// delivered checks that every record of f was read, each shard in order
// (a record read again after a lane moved starts over from a checkpoint,
// so order holds per reader).
func delivered(t *testing.T, f *fake, ws ...*worker) error {
	seen := map[string]bool{}
	for _, w := range ws {
		for lane, bs := range w.bodies() {
			for i, b := range bs {
				seen[b] = true
				if i > 0 && bs[i-1] >= b && len(bs[i-1]) == len(b) {
					t.Errorf("%s read out of order: %v", lane, bs)
				}
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, s := range f.shards {
		for _, r := range s.recs {
			if !seen[string(r.Data)] {
				return fmt.Errorf("%s: %s not read", id, r.Data)
			}
		}
	}
	return nil
}

// TestLeasesShareShards: two pollers on one PostgreSQL store read 8
// shards 4 and 4, every record at least once; when one closes (releasing
// its leases), the other takes its shards and reads on from their
// checkpoints.
func TestLeasesShareShards(t *testing.T) {
	s := leaseStore(t)
	f, _ := eightShards(5)
	a := startWorker(t, f, s, s, "a")
	b := startWorker(t, f, s, s, "b")
	testenv.EventuallyTrue(t, 30*time.Second, "the shards split 4 and 4", func() bool {
		la, lb := a.p.Leased(), b.p.Leased()
		return len(la) == 4 && len(lb) == 4 && !slices.ContainsFunc(la, func(l string) bool { return slices.Contains(lb, l) })
	})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error { return delivered(t, f, a, b) })
	// Every shard's checkpoint is its last record.
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		pos, err := s.Positions(ctx, "m")
		if err != nil {
			return err
		}
		for i := range 8 {
			if id := fmt.Sprintf("shard-%d", i); pos[id] != "00000005" {
				return fmt.Errorf("checkpoints %v", pos)
			}
		}
		return nil
	})

	gone := b.p.Leased()
	before := a.bodies()
	b.stop()
	for _, id := range gone {
		f.put(id, id+"/5")
	}
	testenv.EventuallyTrue(t, 30*time.Second, "a takes b's shards", func() bool { return len(a.p.Leased()) == 8 })
	testenv.Eventually(t, 30*time.Second, func(context.Context) error { return delivered(t, f, a, b) })
	// a read b's shards from their checkpoints: only the new records.
	got := a.bodies()
	for _, id := range gone {
		if after := got[id][len(before[id]):]; !slices.Equal(after, []string{id + "/5"}) {
			t.Errorf("a read %v of %s after b left", after, id)
		}
	}
}

// cut is Leases whose Balance fails while cut is set: the worker cannot
// renew (its database is out of reach, or it is paused).
type cut struct {
	*pgstore.Store
	cut atomic.Bool
}

func (c *cut) Balance(ctx context.Context, mapping, worker string, ready []string, ttl time.Duration) (map[string]int64, []string, error) {
	if c.cut.Load() {
		return nil, nil, errors.New("cut off")
	}
	return c.Store.Balance(ctx, mapping, worker, ready, ttl)
}

// TestLostLeaseIsFenced: a worker that cannot renew stops reading once
// its lease time passed; another takes its shards over and checkpoints;
// the first worker's late acknowledgements do not write over them.
func TestLostLeaseIsFenced(t *testing.T) {
	s := leaseStore(t)
	f := newFake()
	f.shard("shard-0")
	f.put("shard-0", "r1", "r2")
	lc := &cut{Store: s}
	// A poller whose records are acknowledged by the test, late.
	c := stream.Config{}
	c.Mapping = "m"
	c.EmptyWait, c.MaxWait, c.ListInterval = time.Millisecond, 5*time.Millisecond, 10*time.Millisecond
	c.Positions, c.Leases, c.Worker, c.LeaseTTL = s, lc, "a", time.Second
	p, err := stream.New(context.Background(), f, c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := pollN(t, p, 2)
	lc.cut.Store(true)
	testenv.EventuallyTrue(t, 30*time.Second, "a stops reading", func() bool { return len(p.Leased()) == 0 })
	// b takes the shard over (a's lease expired) and checkpoints ahead.
	var owned map[string]int64
	testenv.EventuallyTrue(t, 30*time.Second, "b holds the shard", func() bool {
		owned, _, err = s.Balance(t.Context(), "m", "b", []string{"shard-0"}, time.Hour)
		return err == nil && len(owned) == 1
	})
	if lost, err := s.SetPositionsFenced(t.Context(), "m", "b", map[string]string{"shard-0": "00000009"}, owned); err != nil || len(lost) != 0 {
		t.Fatalf("b's checkpoint: %v %v", lost, err)
	}
	// a acknowledges its records now: nothing is written over b's.
	err = p.Ack(context.Background(), []source.Record{recs[0], recs[1]}, nil)
	if err != nil && !errors.As(err, new(*stream.LostError)) {
		t.Fatalf("late ack: %v", err)
	}
	p.Close()
	if pos, _, _ := s.Position(t.Context(), "m", "shard-0"); pos != "00000009" {
		t.Errorf("position after a's late acknowledgement: %s", pos)
	}
}

// TestReplayResetsLeasedShards: a replay's new positions (stream.Rewind on
// a store that leases) take the shards from the worker still reading
// them, which reads them again from there; nothing it wrote before
// overwrites the new positions.
func TestReplayResetsLeasedShards(t *testing.T) {
	s := leaseStore(t)
	f := newFake()
	for _, id := range []string{"shard-0", "shard-1"} {
		f.shard(id)
		f.put(id, id+"/0", id+"/1", id+"/2")
	}
	a := startWorker(t, f, s, s, "a")
	testenv.Eventually(t, 30*time.Second, func(context.Context) error { return delivered(t, f, a) })
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		if pos, err := s.Positions(ctx, "m"); err != nil || pos["shard-0"] != "00000003" || pos["shard-1"] != "00000003" {
			return fmt.Errorf("checkpoints %v %v", pos, err)
		}
		return nil
	})
	if err := stream.Rewind(t.Context(), f, s, "m", esm.Position{Type: esm.ReplayTrimHorizon}); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 30*time.Second, "every record read twice", func() bool {
		got := a.bodies()
		return len(got["shard-0"]) == 6 && len(got["shard-1"]) == 6
	})
	got := a.bodies()
	for _, id := range []string{"shard-0", "shard-1"} {
		want := []string{id + "/0", id + "/1", id + "/2", id + "/0", id + "/1", id + "/2"}
		if !slices.Equal(got[id], want) {
			t.Errorf("%s read %v, want %v", id, got[id], want)
		}
	}
}
