package pipeline

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/batcher"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// bigPoller hands out n records of size bytes in one lane, one per Poll.
type bigPoller struct {
	n, size int
	mu      sync.Mutex
	polled  int
}

func (p *bigPoller) Poll(ctx context.Context) ([]source.Record, error) {
	p.mu.Lock()
	if p.polled >= p.n {
		p.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	seq := strconv.Itoa(p.polled)
	p.polled++
	p.mu.Unlock()
	data := `"` + seq + strings.Repeat("x", p.size-2-len(seq)) + `"`
	return []source.Record{{Lane: "lane-0", ID: seq, Seq: seq, Data: []byte(data)}}, nil
}

func (p *bigPoller) Ack(context.Context, []source.Record, error) error { return nil }
func (p *bigPoller) Close() error                                      { return nil }

func (p *bigPoller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polled
}

// gatedInvoker records each event's records and answers once gate is
// closed.
type gatedInvoker struct {
	gate   chan struct{}
	mu     sync.Mutex
	events [][]string
}

func (g *gatedInvoker) Invoke(ctx context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct{ Records []string }
	if err := json.Unmarshal(payload, &ev); err != nil {
		return dispatcher.Result{}, err
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return dispatcher.Result{}, ctx.Err()
	}
	g.mu.Lock()
	g.events = append(g.events, ev.Records)
	g.mu.Unlock()
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

// TestPipelineByteBoundLetsLargeRecordsThrough: records each larger than
// MaxBufferedBytes still flow, one batch at a time: while the function
// holds a batch, at most one more record is read and polling pauses;
// every record is then invoked, in order.
func TestPipelineByteBoundLetsLargeRecordsThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, size = 6, 10 << 10
		inv := &gatedInvoker{gate: make(chan struct{})}
		pl := &bigPoller{n: n, size: size}
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(10))
			c.MaximumBatchingWindowInSeconds = ptr(int64(0))
		})
		r := &Runner{Source: descriptorFor(esm.SourceKinesis), Invoker: inv, MaxBufferedBytes: 1 << 10,
			Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return pl, nil }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
		synctest.Wait() // the first batch is in flight, polling paused
		got := pl.count()
		close(inv.gate)
		if got < 1 || got > 2 {
			t.Errorf("%d polls while the first record is in flight, want it and at most one buffered", got)
		}
		testenv.EventuallyTrue(t, 10*time.Second, "every record invoked", func() bool {
			inv.mu.Lock()
			defer inv.mu.Unlock()
			return len(inv.events) == n
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for i, ev := range inv.events {
			if len(ev) != 1 || !strings.HasPrefix(ev[0], strconv.Itoa(i)+"x") {
				t.Fatalf("invocation %d has %d records (first %.8q), want record %d alone", i, len(ev), ev, i)
			}
		}
	})
}

// TestReadAheadPollsForWaitingLanes: past the byte bound polling pauses,
// unless a lane holds a batch short of BatchSize that waits for its
// batching window: its next records are at the source, and without them
// it would wait out the window.
func TestReadAheadPollsForWaitingLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := batcher.New(batcher.Policy{BatchSize: 10, Window: 500 * time.Millisecond}, payload.Records("arn:aws:sqs:us-east-1:000000000000:q"))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		a := &readAhead{b: b, records: func() int { return 1000 }, bytes: 100, batch: 10, own: true}
		add := func(lane string, n int) {
			for i := range n {
				if err := b.Add(source.Record{Lane: lane, ID: strconv.Itoa(i), Seq: strconv.Itoa(i), Data: []byte(`"0123456789"`)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		add("a", 20) // two full batches, 240 bytes: past the bound
		if !a.full() {
			t.Fatal("not full past the byte bound with only full batches")
		}
		add("b", 3) // a batch waiting for its window
		if a.full() {
			t.Fatal("full while lane b's batch waits for its window")
		}
		add("b", 7) // full now: nothing waits
		if !a.full() {
			t.Fatal("not full once every batch is full")
		}
		if a.records = func() int { return 20 }; !a.full() {
			t.Fatal("the record bound does not hold")
		}
		// A waiting batch lets the buffer grow to waitingBytes times the
		// byte bound, no further.
		a.records = func() int { return 1000 }
		add("c", 3)
		if a.full() {
			t.Fatal("full while lane c's batch waits for its window")
		}
		add("d", 4*waitingBytes)
		if !a.full() {
			t.Fatal("not full past waitingBytes times the byte bound")
		}
	})
}
