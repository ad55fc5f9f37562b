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

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
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
