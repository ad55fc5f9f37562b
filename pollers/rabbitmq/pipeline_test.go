package rabbitmq_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

// function is an in-process function for the pipeline tests: it decodes
// each event as aws-lambda-go's RabbitMQEvent, records the messages, and
// fails when fail says so.
type function struct {
	mu      sync.Mutex
	calls   int
	seen    []seenMsg
	batches []int // messages per invocation
	fail    func(call int, msgs []seenMsg) bool
}

type seenMsg struct {
	Body        string
	Redelivered bool
}

func (f *function) Invoke(_ context.Context, _ string, ev []byte) (dispatcher.Result, error) {
	var e events.RabbitMQEvent
	if err := json.Unmarshal(ev, &e); err != nil {
		return dispatcher.Result{}, fmt.Errorf("event does not decode as RabbitMQEvent: %w", err)
	}
	var msgs []seenMsg
	for _, ms := range e.MessagesByQueue {
		for _, m := range ms {
			b, _ := base64.StdEncoding.DecodeString(m.Data)
			msgs = append(msgs, seenMsg{string(b), m.Redelivered})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.seen = append(f.seen, msgs...)
	f.batches = append(f.batches, len(msgs))
	if f.fail != nil && f.fail(f.calls, msgs) {
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
func (r *reporter) result() string            { r.mu.Lock(); defer r.mu.Unlock(); return r.last }

// runPipeline runs a mapping of q through pipeline.Runner with fn until
// the test ends.
func runPipeline(t *testing.T, b *testenv.RabbitMQBroker, vhost, q string, fn dispatcher.Invoker, edit func(*esm.Config)) *reporter {
	t.Helper()
	m := &esm.Mapping{UUID: "6f1c0d4e-0000-4000-8000-000000000001", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:f",
		Source: esm.SourceMQ}
	arn := "arn:aws:mq:us-east-1:000000000000:broker:test:b-1"
	m.Config.EventSourceArn = &arn
	m.Config.Queues = []string{q}
	bs := int64(10)
	m.Config.BatchSize = &bs
	typ, secret := "BASIC_AUTH", "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq"
	m.Config.SourceAccessConfigurations = []esm.SourceAccessConfiguration{{Type: &typ, URI: &secret}}
	if edit != nil {
		edit(&m.Config)
	}
	if got := rabbitmq.VHost(&m.Config); got != vhost {
		t.Fatalf("the mapping's virtual host is %q, want %q", got, vhost)
	}
	env := &rabbitmq.Env{
		Brokers: map[string]string{arn: "amqp://" + b.Addr},
		Secret: func(_ context.Context, arn string, _ secrets.Target) (string, string, error) {
			if arn != secret {
				return "", "", fmt.Errorf("no secret %s", arn)
			}
			return testenv.RabbitMQUser, testenv.RabbitMQPassword, nil
		},
	}
	r := &pipeline.Runner{Source: rabbitmq.Descriptor(),
		Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
			cfg, err := env.Config(ctx, &m.Config, m.UUID)
			if err != nil {
				return nil, err
			}
			cfg.ReconnectDelay, cfg.MaxReconnectDelay = 50*time.Millisecond, 500*time.Millisecond
			return rabbitmq.Open(ctx, cfg)
		},
		Invoker: fn,
	}
	rep := &reporter{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, rep) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return rep
}

// TestPipelineAcksDeliveredAndFiltered: messages the filter keeps reach
// the function and are acked after it succeeds; the others are acked
// without an invocation (spec MQ-5).
func TestPipelineAcksDeliveredAndFiltered(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	const n = 30
	for i := range n {
		pub.text(q, fmt.Sprintf(`{"n":%d,"keep":%v}`, i, i%3 != 0))
	}
	fn := &function{}
	rep := runPipeline(t, b, "/", q, fn, func(c *esm.Config) {
		p := `{"data":{"keep":[true]}}`
		c.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: &p}}}
	})
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got < n*2/3 {
			return fmt.Errorf("function saw %d messages", got)
		}
		if r := ready(t, b, "/", q); r != 0 {
			return fmt.Errorf("%d ready", r)
		}
		if rep.result() != "OK" {
			return fmt.Errorf("last processing result %q", rep.result())
		}
		return nil
	})
	for _, m := range fn.messages() {
		var v struct{ Keep bool }
		if err := json.Unmarshal([]byte(m.Body), &v); err != nil || !v.Keep {
			t.Errorf("function got a filtered-out message %s", m.Body)
		}
	}
	assertAllAcked(t, b, "/", q)
}

// assertAllAcked waits until nothing is left in the queue, ready or
// unacknowledged (the last ack may trail the invocation a little).
func assertAllAcked(t *testing.T, b *testenv.RabbitMQBroker, vhost, q string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		out := b.Ctl(t, "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
		for _, line := range splitLines(out) {
			var name string
			var ready, unacked int
			if _, err := fmt.Sscanf(line, "%s %d %d", &name, &ready, &unacked); err == nil && name == q && ready+unacked != 0 {
				return fmt.Errorf("%d messages ready, %d unacknowledged", ready, unacked)
			}
		}
		return nil
	})
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestPipelineRedeliversFailedBatch: when the function fails, the whole
// batch is requeued and comes back with redelivered=true until it
// succeeds (spec MQ-4).
func TestPipelineRedeliversFailedBatch(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	for i := range 3 {
		pub.text(q, fmt.Sprintf("m%d", i))
	}
	fn := &function{fail: func(call int, _ []seenMsg) bool { return call <= 2 }}
	rep := runPipeline(t, b, "/", q, fn, nil)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		fn.mu.Lock()
		calls := fn.calls
		fn.mu.Unlock()
		if calls < 3 || ready(t, b, "/", q) != 0 {
			return fmt.Errorf("%d calls", calls)
		}
		if rep.result() != "OK" {
			return fmt.Errorf("last processing result %q", rep.result())
		}
		return nil
	})
	count := map[string]int{}
	for _, m := range fn.messages() {
		if count[m.Body] > 0 && !m.Redelivered {
			t.Errorf("%s delivered again without redelivered=true", m.Body)
		}
		count[m.Body]++
	}
	for i := range 3 {
		if c := count[fmt.Sprintf("m%d", i)]; c < 3 {
			t.Errorf("m%d invoked %d times, want 3 (two failures)", i, c)
		}
	}
	assertAllAcked(t, b, "/", q)
}

// TestPipelineDeadLettersAtDeliveryLimit: a message the function always
// fails on is retried until the queue's own policy dead-letters it: here a
// quorum queue's x-delivery-limit, in a virtual host other than "/".
func TestPipelineDeadLettersAtDeliveryLimit(t *testing.T) {
	b := testenv.RabbitMQ(t)
	vh := testenv.RabbitMQVHost
	dlq := queue(t, b, vh, nil)
	q := queue(t, b, vh, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": int32(2),
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
	pub := newPublisher(t, b, vh)
	pub.text(q, "poison")
	pub.text(q, "fine")
	fn := &function{fail: func(_ int, msgs []seenMsg) bool {
		for _, m := range msgs {
			if m.Body == "poison" {
				return true
			}
		}
		return false
	}}
	rep := runPipeline(t, b, vh, q, fn, func(c *esm.Config) {
		one := int64(1) // one message per batch, so "fine" is not failed with "poison"
		c.BatchSize = &one
		typ, uri := "VIRTUAL_HOST", vh
		c.SourceAccessConfigurations = append(c.SourceAccessConfigurations, esm.SourceAccessConfiguration{Type: &typ, URI: &uri})
	})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := ready(t, b, vh, dlq); n != 1 {
			return fmt.Errorf("%d messages in the dead-letter queue", n)
		}
		return nil
	})
	poison := 0
	for _, m := range fn.messages() {
		if m.Body == "poison" {
			poison++
		}
	}
	// delivery-limit 2: the first delivery and two redeliveries.
	if poison != 3 {
		t.Errorf("poison invoked %d times, want 3", poison)
	}
	if r := rep.result(); r == "" {
		t.Errorf("no processing result")
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if r := ready(t, b, vh, q); r != 0 {
			return fmt.Errorf("%d left in the queue", r)
		}
		return nil
	})
}

// TestPipelineBrokerRestartMidStream restarts the broker while messages
// are being published and consumed through the pipeline: the poller
// reconnects by itself, and every message reaches the function and is
// acked in the end (some twice: at least once).
func TestPipelineBrokerRestartMidStream(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	fn := &function{}
	runPipeline(t, b, "/", q, fn, nil)
	const n = 200
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			pub.text(q, fmt.Sprintf("m-%03d", i))
			if i == n/2 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got < n/4 {
			return fmt.Errorf("function saw %d messages", got)
		}
		return nil
	})
	b.Restart(t)
	<-published
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		seen := map[string]bool{}
		for _, m := range fn.messages() {
			seen[m.Body] = true
		}
		if len(seen) != n {
			return fmt.Errorf("function saw %d distinct messages of %d", len(seen), n)
		}
		return nil
	})
	assertAllAcked(t, b, "/", q)
}

func (f *function) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

// TestPipelineBatchesAndWindow: a backlog is invoked in batches of at
// most BatchSize; a few messages arriving on an idle queue are invoked
// together once the 500 ms default window (spec MQ-2) has passed.
func TestPipelineBatchesAndWindow(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	for i := range 25 {
		pub.text(q, fmt.Sprint(i))
	}
	fn := &function{}
	runPipeline(t, b, "/", q, fn, nil) // BatchSize 10
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got != 25 {
			return fmt.Errorf("%d messages invoked", got)
		}
		return nil
	})
	full := 0
	for _, n := range fn.sizes() {
		if n > 10 {
			t.Fatalf("a batch of %d with BatchSize 10: %v", n, fn.sizes())
		}
		if n == 10 {
			full++
		}
	}
	if full < 2 {
		t.Errorf("batches %v: want the backlog in full batches", fn.sizes())
	}
	before := len(fn.sizes())
	start := time.Now()
	for i := range 3 {
		pub.text(q, fmt.Sprintf("late-%d", i))
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if got := len(fn.messages()); got != 28 {
			return fmt.Errorf("%d messages invoked", got)
		}
		return nil
	})
	if sizes := fn.sizes()[before:]; len(sizes) != 1 || sizes[0] != 3 {
		t.Errorf("3 messages within the window were invoked as %v", sizes)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("invoked after %v, before the 500 ms window", d)
	}
	assertAllAcked(t, b, "/", q)
}

// TestPipelineDropsOversizeMessage: a message whose event would pass the
// 6 MB invocation limit is acked without an invocation (spec MQ-6: the
// descriptor's OversizeDrop), and the next one is invoked.
func TestPipelineDropsOversizeMessage(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	pub.publish(q, amqp.Publishing{Body: make([]byte, 5<<20)}) // 6.7 MB in base64
	pub.text(q, "small")
	fn := &function{}
	t.Run("run", func(t *testing.T) { // the pipeline stops when the subtest ends
		runPipeline(t, b, "/", q, fn, nil)
		testenv.Eventually(t, 20*time.Second, func(context.Context) error {
			if got := len(fn.messages()); got != 1 {
				return fmt.Errorf("function saw %d messages", got)
			}
			return nil
		})
	})
	if m := fn.messages(); len(m) != 1 || m[0].Body != "small" {
		t.Fatalf("function got %v", m)
	}
	// Unacked messages are back in the queue once the pipeline stopped.
	if n := ready(t, b, "/", q); n != 0 {
		t.Fatalf("%d messages left: the oversize one was not acked", n)
	}
}
