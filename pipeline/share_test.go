package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

// fakeQueue is a queue source in memory: records handed out and neither
// finished nor failed when the poller closes come back (a visibility
// timeout that ends at once).
type fakeQueue struct {
	mu       sync.Mutex
	changed  chan struct{}
	pending  []string
	out      map[string]bool // handed out, not acknowledged
	finished map[string]int  // acknowledged as done
	closes   int
}

func newFakeQueue(n int) *fakeQueue {
	q := &fakeQueue{changed: make(chan struct{}), out: map[string]bool{}, finished: map[string]int{}}
	for i := range n {
		q.pending = append(q.pending, fmt.Sprintf("m-%03d", i))
	}
	return q
}

func (q *fakeQueue) wake() { close(q.changed); q.changed = make(chan struct{}) }

func (q *fakeQueue) Poll(ctx context.Context) ([]source.Record, error) {
	for {
		q.mu.Lock()
		if len(q.pending) > 0 {
			var recs []source.Record
			for _, b := range q.pending[:min(3, len(q.pending))] {
				data, _ := json.Marshal(memsource.Body{Body: b})
				recs = append(recs, source.Record{ID: b, Lane: "q", Seq: b, Data: data, Size: len(data)})
				q.out[b] = true
			}
			q.pending = q.pending[len(recs):]
			q.mu.Unlock()
			return recs, nil
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (q *fakeQueue) Ack(_ context.Context, recs []source.Record, outcome error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	done, failed := source.Split(recs, outcome)
	for _, r := range done {
		delete(q.out, r.ID)
		q.finished[r.ID]++
	}
	for _, r := range failed {
		delete(q.out, r.ID)
		q.pending = append(q.pending, r.ID)
	}
	q.wake()
	return nil
}

func (q *fakeQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for b := range q.out {
		q.pending = append(q.pending, b)
		delete(q.out, b)
	}
	q.closes++
	q.wake()
	return nil
}

// fakeSharer is a shared store whose share the test sets.
type fakeSharer struct {
	mu    sync.Mutex
	share int
	calls int
	left  bool
}

func (s *fakeSharer) Position(context.Context, string, string) (string, bool, error) {
	return "", false, nil
}
func (s *fakeSharer) SetPosition(context.Context, string, string, string) error     { return nil }
func (s *fakeSharer) SetPositions(context.Context, string, map[string]string) error { return nil }
func (s *fakeSharer) LeaveShare(context.Context, string, string) error {
	s.mu.Lock()
	s.left = true
	s.mu.Unlock()
	return nil
}
func (s *fakeSharer) ConcurrencyShare(_ context.Context, _, _ string, limit int, _ time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return min(s.share, limit), nil
}

// set changes the share and waits until the pipeline applied it: two
// renewals after the change, the first one's share is set.
func (s *fakeSharer) set(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	s.share = n
	from := s.calls
	s.mu.Unlock()
	testenv.EventuallyTrue(t, 10*time.Second, "share applied", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.calls >= from+2
	})
}

// gaugeInvoker counts the invocations in flight and the records invoked,
// and holds invocations while hold is not nil.
type gaugeInvoker struct {
	mu      sync.Mutex
	cur     int
	peak    int // since the last resetPeak
	hold    chan struct{}
	invoked map[string]int
}

func (g *gaugeInvoker) Invoke(ctx context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct {
		Records []memsource.Body `json:"Records"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return dispatcher.Result{}, err
	}
	g.mu.Lock()
	g.cur++
	g.peak = max(g.peak, g.cur)
	for _, b := range ev.Records {
		g.invoked[b.Body]++
	}
	hold := g.hold
	g.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	g.mu.Lock()
	g.cur--
	g.mu.Unlock()
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

func (g *gaugeInvoker) inFlight() int { g.mu.Lock(); defer g.mu.Unlock(); return g.cur }

// TestPipelineConcurrencyShareChanges: a queue mapping's in-flight limit
// follows the worker's share of its cap while it runs. A raised share
// lets more invocations start, a lowered one lets none start until fewer
// than it are in flight, and a share of 0 stops the pipeline (handing
// back what it held) until the share comes back. Every record is invoked
// and finished exactly once.
func TestPipelineConcurrencyShareChanges(t *testing.T) {
	const n = 40
	q := newFakeQueue(n)
	sh := &fakeSharer{share: 1}
	inv := &gaugeInvoker{invoked: map[string]int{}, hold: make(chan struct{})}
	d := *descriptorFor(esm.SourceKinesis)
	d.Delivery = source.Queue
	d.Batching = source.Batching{BatchSize: 1, Deal: true}
	m := mapping(func(c *esm.Config) {
		c.BatchSize = ptr(int64(1))
		c.ScalingConfig = &esm.ScalingConfig{MaximumConcurrency: ptr(int64(4))}
	})
	r := &Runner{
		Source: &d,
		Env: &source.Env{Store: sh, Worker: "w1", LeaseTTL: 30 * time.Millisecond, Flags: map[string][]string{},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Open:    func(context.Context, *esm.Mapping) (source.Poller, error) { return q, nil },
		Invoker: inv,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	// Share 1: one invocation held; the peak stays 1 (checked below).
	testenv.EventuallyTrue(t, 10*time.Second, "one invocation in flight", func() bool { return inv.inFlight() == 1 })
	// Share 3: three held at once.
	sh.set(t, 3)
	testenv.EventuallyTrue(t, 10*time.Second, "three invocations in flight", func() bool { return inv.inFlight() == 3 })
	inv.mu.Lock()
	if inv.peak != 3 {
		t.Errorf("peak with shares 1 then 3: %d, want 3", inv.peak)
	}
	inv.mu.Unlock()
	// Share 1 again: once the three held ones finish, never more than one.
	sh.set(t, 1)
	inv.mu.Lock()
	close(inv.hold)
	inv.hold = nil
	inv.mu.Unlock()
	testenv.EventuallyTrue(t, 10*time.Second, "the held invocations finish", func() bool { return inv.inFlight() <= 1 })
	inv.mu.Lock()
	inv.peak = inv.cur
	inv.mu.Unlock()
	// Share 0: the pipeline stops and hands back what it held.
	sh.set(t, 0)
	testenv.EventuallyTrue(t, 10*time.Second, "the poller closed", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.closes == 1 })
	inv.mu.Lock()
	if inv.peak > 1 {
		t.Errorf("peak with share 1 after 3: %d, want 1", inv.peak)
	}
	inv.mu.Unlock()
	// Share 2: it runs again and finishes the queue.
	sh.set(t, 2)
	testenv.EventuallyTrue(t, 10*time.Second, "every record finished", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.finished) == n
	})
	q.mu.Lock()
	for b, c := range q.finished {
		if c != 1 {
			t.Errorf("%s finished %d times", b, c)
		}
	}
	q.mu.Unlock()
	inv.mu.Lock()
	for b, c := range inv.invoked {
		if c != 1 {
			t.Errorf("%s invoked %d times", b, c)
		}
	}
	if len(inv.invoked) != n {
		t.Errorf("%d records invoked, want %d", len(inv.invoked), n)
	}
	inv.mu.Unlock()
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	sh.mu.Lock()
	if !sh.left {
		t.Error("the worker did not leave the share when it stopped")
	}
	sh.mu.Unlock()
}

// TestPipelineAloneAppliesTheWholeCap: without a shared store (the
// embedded one) the pipeline applies the mapping's whole cap and asks
// nobody for a share.
func TestPipelineAloneAppliesTheWholeCap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   *source.Env
		queue bool
	}{
		{"no store", &source.Env{Worker: "w1", LeaseTTL: time.Second}, true},
		{"no worker id", &source.Env{Store: &fakeSharer{}, LeaseTTL: time.Second}, true},
		{"ordered source", &source.Env{Store: &fakeSharer{}, Worker: "w1", LeaseTTL: time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := *descriptorFor(esm.SourceKinesis)
			if tc.queue {
				d.Delivery = source.Queue
			}
			r := &Runner{Source: &d, Env: tc.env}
			m := mapping(func(c *esm.Config) { c.ScalingConfig = &esm.ScalingConfig{MaximumConcurrency: ptr(int64(4))} })
			if sh, _, _ := r.sharer(); sh != nil && r.concurrencyCap(m) > 0 {
				t.Errorf("the cap is shared")
			}
			if got := r.inFlight(m); got != 4 {
				t.Errorf("in-flight limit %d, want 4", got)
			}
		})
	}
}

// TestLimiterKeep: a holder may keep its slot for another invocation only
// while the limit leaves it room and nobody waits in acquire.
func TestLimiterKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(2)
		ctx := context.Background()
		for range 2 {
			if err := l.acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if !l.keep() {
			t.Fatal("keep refused at the limit with nobody waiting")
		}
		l.set(1) // a share lowered: one slot too many is held
		if l.keep() {
			t.Fatal("keep allowed above a lowered limit")
		}
		l.set(2)
		done := make(chan error)
		go func() { done <- l.acquire(ctx) }()
		synctest.Wait()
		if l.keep() {
			t.Fatal("keep allowed while acquire waits")
		}
		l.release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !l.keep() {
			t.Fatal("keep refused once the waiter got its slot")
		}
	})
}
