package activemq

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

// function is an in-process function for the pipeline tests: it decodes
// each event as aws-lambda-go's ActiveMQEvent (expiration unquoted, see
// TestMessageShape), records the messages, and fails when fail says so.
type function struct {
	mu       sync.Mutex
	calls    int
	seen     []seenMsg
	inflight int
	peak     int
	sleep    time.Duration
	fail     func(call int, msgs []seenMsg) bool
	// The messages of the calls that failed and of those that succeeded.
	failed, succeeded []seenMsg
}

type seenMsg struct {
	Body        string
	Redelivered bool
}

func (f *function) Invoke(_ context.Context, _ string, ev []byte) (dispatcher.Result, error) {
	var e struct {
		EventSource string `json:"eventSource"`
		Messages    []struct {
			Data        string `json:"data"`
			Redelivered bool   `json:"redelivered"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(ev, &e); err != nil || e.EventSource != "aws:mq" {
		return dispatcher.Result{}, fmt.Errorf("not an aws:mq event (%v): %s", err, ev)
	}
	var msgs []seenMsg
	for _, m := range e.Messages {
		b, _ := base64.StdEncoding.DecodeString(m.Data)
		msgs = append(msgs, seenMsg{string(b), m.Redelivered})
	}
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.seen = append(f.seen, msgs...)
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	f.mu.Unlock()
	time.Sleep(f.sleep)
	fail := f.fail != nil && f.fail(call, msgs)
	f.mu.Lock()
	f.inflight--
	if fail {
		f.failed = append(f.failed, msgs...)
	} else {
		f.succeeded = append(f.succeeded, msgs...)
	}
	f.mu.Unlock()
	if fail {
		return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled", Payload: []byte(`{"errorMessage":"no"}`)}, nil
	}
	return dispatcher.Result{StatusCode: 200, Payload: []byte(`null`)}, nil
}

func (f *function) messages() []seenMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenMsg(nil), f.seen...)
}

type reporter struct {
	mu   sync.Mutex
	last string
}

func (r *reporter) ProcessingResult(s string) { r.mu.Lock(); r.last = s; r.mu.Unlock() }
func (r *reporter) Disable(string)            {}

// runPipeline runs a mapping of q through pipeline.Runner with fn; stop
// ends it (also at the test's end).
func runPipeline(t *testing.T, b *testenv.ActiveMQBroker, q string, fn dispatcher.Invoker, edit func(*esm.Config)) (stop func()) {
	t.Helper()
	return runPipelineWith(t, b, q, fn, edit, func(ctx context.Context, cfg Config) (source.Poller, error) { return Open(ctx, cfg) })
}

// runPipelineWith is runPipeline with the poller opened by open, which may
// change its Config or wrap it.
func runPipelineWith(t *testing.T, b *testenv.ActiveMQBroker, q string, fn dispatcher.Invoker, edit func(*esm.Config),
	open func(context.Context, Config) (source.Poller, error)) (stop func()) {
	t.Helper()
	m := &esm.Mapping{UUID: "6f1c0d4e-0000-4000-8000-000000000002", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:f",
		Source: esm.SourceMQ}
	arn := "arn:aws:mq:us-east-1:000000000000:broker:test:b-1"
	m.Config.EventSourceArn = &arn
	m.Config.Queues = []string{q}
	bs := int64(10)
	m.Config.BatchSize = &bs
	if edit != nil {
		edit(&m.Config)
	}
	r := &pipeline.Runner{Source: Descriptor(),
		Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
			cfg := config(b, q)
			cfg.BatchSize = int(*m.Config.BatchSize)
			return open(ctx, cfg)
		},
		Invoker: fn,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, &reporter{}) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// assertEmpty checks that nothing is left in q: a fresh consumer gets no
// message within 3 s.
func assertEmpty(t *testing.T, b *testenv.ActiveMQBroker, q string) {
	t.Helper()
	p := open(t, config(b, q))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if recs, err := p.Poll(ctx); err == nil {
		t.Errorf("%d messages left in %s, the first %s", len(recs), q, recs[0].Data)
	}
}

// TestPipelineAcksDeliveredAndFiltered: messages the filter keeps reach the
// function and are ACKed; the others are ACKed without an invocation
// (spec MQ-5).
func TestPipelineAcksDeliveredAndFiltered(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	const n = 30
	fn := &function{}
	w, acks, stop := runFiltered(t, b, q, n, fn)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got < n*2/3 {
			return fmt.Errorf("function saw %d messages", got)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the last ACKs
	stop()
	for _, m := range fn.messages() {
		var v struct{ Keep bool }
		if err := json.Unmarshal([]byte(m.Body), &v); err != nil || !v.Keep {
			t.Errorf("function got a filtered-out message %s", m.Body)
		}
	}
	t.Logf("%d ACK frames for %d messages, %d invocations, %d Ack calls", w.n("ACK"), n, fn.calls, acks.calls.Load())
	if w.n("ACK") > int(acks.calls.Load()) || w.n("NACK") != 0 {
		t.Errorf("%d ACK and %d NACK frames for %d Ack calls, want at most one ACK per call and no NACK", w.n("ACK"), w.n("NACK"), acks.calls.Load())
	}
	assertEmpty(t, b, q)
}

// TestPipelineRedeliversThenDLQ: a failed batch comes back whole with
// redelivered:true; a message the function always fails on goes to the
// DLQ after 6 redeliveries (spec MQ-4), and the others are not held up.
func TestPipelineRedeliversThenDLQ(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	c := b.Dial(t)
	poison := "poison-" + q
	send(t, c, q, []byte(poison), false)
	send(t, c, q, []byte("fine"), false)
	fn := &function{fail: func(_ int, msgs []seenMsg) bool {
		for _, m := range msgs {
			if m.Body == poison {
				return true
			}
		}
		return false
	}}
	stop := runPipeline(t, b, q, fn, func(c *esm.Config) {
		one := int64(1)
		c.BatchSize = &one
	})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		n := 0
		for _, m := range fn.messages() {
			if m.Body == poison {
				n++
			}
		}
		if n < 1+testenv.ActiveMQRedeliveries {
			return fmt.Errorf("poison invoked %d times", n)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	stop()
	seen := map[string]int{}
	for _, m := range fn.messages() {
		if seen[m.Body] > 0 && !m.Redelivered {
			t.Errorf("%s invoked again without redelivered:true", m.Body)
		}
		seen[m.Body]++
	}
	if seen[poison] != 1+testenv.ActiveMQRedeliveries || seen["fine"] != 1 {
		t.Errorf("invocations per message %v, want poison 7, fine 1", seen)
	}
	assertEmpty(t, b, q)
	dlq := open(t, config(b, testenv.ActiveMQDLQ))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		recs, err := dlq.Poll(ctx)
		if err != nil {
			t.Fatalf("%s is not in the DLQ: %v", poison, err)
		}
		_ = dlq.Ack(ctx, recs, nil)
		for _, r := range recs {
			if body(t, r) == poison {
				return
			}
		}
	}
}

// TestPipelineConcurrency: a backlog is worked on by up to 5 invocations
// at once (spec MQ-3), never more, and acknowledged with at most one ACK
// frame per batch.
func TestPipelineConcurrency(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	c := b.Dial(t)
	const n = 200
	for i := range n {
		send(t, c, q, fmt.Appendf(nil, "m%d", i), false)
	}
	fn := &function{sleep: 100 * time.Millisecond}
	w := &wire{}
	stop := runPipelineWith(t, b, q, fn, nil, func(ctx context.Context, cfg Config) (source.Poller, error) {
		cfg.wrap = w.wrap
		return Open(ctx, cfg)
	})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got < n {
			return fmt.Errorf("function saw %d messages", got)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the last ACKs
	stop()
	fn.mu.Lock()
	peak, calls := fn.peak, fn.calls
	fn.mu.Unlock()
	if peak < 2 || peak > 5 {
		t.Errorf("peak concurrent invocations %d, want 2..5", peak)
	}
	t.Logf("peak concurrent invocations: %d; %d ACK frames for %d messages in %d invocations", peak, w.n("ACK"), n, calls)
	// At most one ACK frame per batch: with lanes finishing out of order,
	// fewer.
	if w.n("ACK") > calls || w.n("NACK") != 0 {
		t.Errorf("%d ACK and %d NACK frames for %d invocations", w.n("ACK"), w.n("NACK"), calls)
	}
	assertEmpty(t, b, q)
}

// ackCounter counts a poller's Ack calls.
type ackCounter struct {
	*Poller
	calls atomic.Int64
}

func (a *ackCounter) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	a.calls.Add(1)
	return a.Poller.Ack(ctx, recs, outcome)
}

// runFiltered sends n messages {"n":i,"keep":bool} to q, a third of them
// with keep false, and runs a mapping of q whose filter drops those, with
// fn. The wire counts the frames of its poller; acks counts its Ack calls.
func runFiltered(t *testing.T, b *testenv.ActiveMQBroker, q string, n int, fn *function) (w *wire, acks *ackCounter, stop func()) {
	t.Helper()
	c := b.Dial(t)
	for i := range n {
		send(t, c, q, fmt.Appendf(nil, `{"n":%d,"keep":%v}`, i, i%3 != 0), false)
	}
	w, acks = &wire{}, &ackCounter{}
	stop = runPipelineWith(t, b, q, fn, func(c *esm.Config) {
		p := `{"data":{"keep":[true]}}`
		c.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: &p}}}
	}, func(ctx context.Context, cfg Config) (source.Poller, error) {
		cfg.wrap = w.wrap
		p, err := Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		acks.Poller = p // opened once: the mapping is not restarted
		return acks, nil
	})
	return w, acks, stop
}

// TestPipelineFailuresPastFiltered: the function fails every batch that
// holds a message on its first delivery, and a third of the messages are
// filtered out, so the pipeline acknowledges those while the batches of
// the messages around them are in flight, and may fail. Every message of
// a failed batch comes back with redelivered:true and then succeeds once;
// no message comes back after it succeeded or was filtered out. The
// poller sends one NACK frame per failed message and at most one ACK
// frame per Ack call.
func TestPipelineFailuresPastFiltered(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	const n = 60
	fn := &function{fail: func(_ int, msgs []seenMsg) bool {
		return slices.ContainsFunc(msgs, func(m seenMsg) bool { return !m.Redelivered })
	}}
	w, acks, stop := runFiltered(t, b, q, n, fn)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		fn.mu.Lock()
		defer fn.mu.Unlock()
		if len(fn.succeeded) < n*2/3 {
			return fmt.Errorf("%d messages succeeded", len(fn.succeeded))
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the last ACKs
	stop()
	seen := fn.messages()
	fn.mu.Lock()
	defer fn.mu.Unlock()
	succeeded := map[string]int{}
	for _, m := range fn.succeeded {
		succeeded[m.Body]++
	}
	for _, m := range seen {
		var v struct{ Keep bool }
		if err := json.Unmarshal([]byte(m.Body), &v); err != nil || !v.Keep {
			t.Errorf("function got a filtered-out message %s", m.Body)
		}
	}
	if len(succeeded) != n*2/3 {
		t.Errorf("%d messages succeeded, want %d", len(succeeded), n*2/3)
	}
	for body, k := range succeeded {
		if k != 1 {
			t.Errorf("%s succeeded %d times", body, k)
		}
	}
	if len(fn.failed) == 0 {
		t.Fatal("no batch failed: the test checks nothing")
	}
	t.Logf("%d messages in failed batches, %d ACK and %d NACK frames, %d Ack calls, %d invocations",
		len(fn.failed), w.n("ACK"), w.n("NACK"), acks.calls.Load(), fn.calls)
	if w.n("NACK") != len(fn.failed) {
		t.Errorf("%d NACK frames for %d failed messages", w.n("NACK"), len(fn.failed))
	}
	if w.n("ACK") > int(acks.calls.Load()) {
		t.Errorf("%d ACK frames for %d Ack calls", w.n("ACK"), acks.calls.Load())
	}
	assertEmpty(t, b, q)
}
