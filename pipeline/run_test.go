package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/pollers/sqs"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
	"unsafe"
)

const streamArn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"

// fakeInvoker records every event and answers with fn.
type fakeInvoker struct {
	mu     sync.Mutex
	events [][]memsource.Body
	fn     func(bodies []memsource.Body) (dispatcher.Result, error)
}

func (f *fakeInvoker) Invoke(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct {
		Records []memsource.Body `json:"Records"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return dispatcher.Result{}, fmt.Errorf("event is not JSON: %v: %s", err, payload)
	}
	f.mu.Lock()
	f.events = append(f.events, ev.Records)
	f.mu.Unlock()
	if f.fn != nil {
		return f.fn(ev.Records)
	}
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

func (f *fakeInvoker) delivered() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, ev := range f.events {
		for _, b := range ev {
			out[b.Body]++
		}
	}
	return out
}

type fakeReporter struct {
	mu   sync.Mutex
	last string
}

func (r *fakeReporter) ProcessingResult(s string) { r.mu.Lock(); r.last = s; r.mu.Unlock() }
func (r *fakeReporter) Disable(string)            {}

type fakeSender struct {
	mu   sync.Mutex
	recs []*destination.Record
	fail int // refuse this many sends first
}

func (s *fakeSender) Send(_ context.Context, r *destination.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("destination down")
	}
	s.recs = append(s.recs, r)
	return nil
}

func mapping(mod func(c *esm.Config)) *esm.Mapping {
	bs, pf, zero, neg := int64(5), int64(1), int64(0), int64(-1)
	c := esm.Config{EventSourceArn: ptr(streamArn), BatchSize: &bs, ParallelizationFactor: &pf,
		MaximumBatchingWindowInSeconds: &zero, MaximumRetryAttempts: &neg, MaximumRecordAgeInSeconds: &neg}
	if mod != nil {
		mod(&c)
	}
	return &esm.Mapping{UUID: "11111111-2222-3333-4444-555555555555", Source: esm.SourceKinesis,
		FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:f", Config: c}
}

func ptr[T any](v T) *T { return &v }

// start runs a pipeline over log until stop is called.
func start(t *testing.T, log *memsource.Log, m *esm.Mapping, inv dispatcher.Invoker, dest destination.Sender) (stop func()) {
	t.Helper()
	r := &Runner{
		Source:     descriptorFor(esm.SourceKinesis),
		Open:       func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil },
		Invoker:    inv,
		RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond,
	}
	if dest != nil {
		r.Destination = func(string, *esm.Mapping) (destination.Sender, error) { return dest, nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("pipeline did not stop")
		}
	}
}

func produce(log *memsource.Log, n, keys int, prefix string) []string {
	var out []string
	for i := range n {
		b := fmt.Sprintf("%s-%03d", prefix, i)
		log.Produce(fmt.Sprintf("k%d", i%keys), b)
		out = append(out, b)
	}
	return out
}

func TestPipelineDeliversInKeyOrderAndCheckpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(3)
		inv := &fakeInvoker{}
		stop := start(t, log, mapping(nil), inv, nil)
		defer stop()
		want := produce(log, 60, 6, "r")
		testenv.EventuallyTrue(t, 10*time.Second, "every record delivered", func() bool { return len(inv.delivered()) == len(want) })
		inv.mu.Lock()
		last := map[string]string{}
		for _, ev := range inv.events {
			if len(ev) > 5 {
				t.Errorf("batch of %d records, BatchSize 5", len(ev))
			}
			for _, b := range ev {
				if p, ok := last[b.Key]; ok && b.Body < p {
					t.Errorf("key %s: %s after %s", b.Key, b.Body, p)
				}
				last[b.Key] = b.Body
			}
		}
		inv.mu.Unlock()
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoints at the end of every lane", func() bool {
			total := 0
			for i := range 3 {
				total += log.Checkpoint(fmt.Sprintf("lane-%d", i)) + 1
			}
			return total == len(want)
		})
	})
}

func TestPipelineFilteredRecordsAreConsumed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &fakeInvoker{}
		m := mapping(func(c *esm.Config) {
			c.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptr(`{"body":[{"prefix":"keep"}]}`)}}}
		})
		stop := start(t, log, m, inv, nil)
		defer stop()
		for i := range 10 {
			if i%2 == 0 {
				log.Produce("k", fmt.Sprintf("keep-%d", i))
			} else {
				log.Produce("k", fmt.Sprintf("drop-%d", i))
			}
		}
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint past every record", func() bool { return log.Checkpoint("lane-0") == 9 })
		for b := range inv.delivered() {
			if !strings.HasPrefix(b, "keep") {
				t.Errorf("filtered record %s was invoked", b)
			}
		}
		if n := len(inv.delivered()); n != 5 {
			t.Errorf("%d records invoked, want 5", n)
		}
	})
}

func TestPipelineRoutesExhaustedBatchesToOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &fakeInvoker{fn: func(bodies []memsource.Body) (dispatcher.Result, error) {
			for _, b := range bodies {
				if b.Body == "r-007" {
					return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled", Payload: []byte(`{"errorMessage":"x"}`)}, nil
				}
			}
			return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
		}}
		dest := &fakeSender{fail: 2}
		m := mapping(func(c *esm.Config) {
			c.MaximumRetryAttempts = ptr(int64(1))
			c.DestinationConfig = &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr("arn:aws:sqs:us-east-1:000000000000:dlq")}}
		})
		stop := start(t, log, m, inv, dest)
		defer stop()
		produce(log, 15, 1, "r")
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the end", func() bool { return log.Checkpoint("lane-0") == 14 })
		dest.mu.Lock()
		defer dest.mu.Unlock()
		if len(dest.recs) != 1 {
			t.Fatalf("%d OnFailure records", len(dest.recs))
		}
		// Batch boundaries depend on how records arrive; the discarded batch is
		// the one holding r-007, whole.
		r := dest.recs[0]
		var start, end int
		fmt.Sscan(kinesisInfo(t, r).StartSequenceNumber, &start)
		fmt.Sscan(kinesisInfo(t, r).EndSequenceNumber, &end)
		if r.Condition != "RetryAttemptsExhausted" || r.ApproximateInvokeCount != 2 || r.Info == nil ||
			start > 7 || end < 7 || kinesisInfo(t, r).BatchSize != end-start+1 || kinesisInfo(t, r).StreamARN != streamArn ||
			r.Response == nil || r.Response.FunctionError != "Unhandled" || r.FunctionARN != m.FunctionArn {
			t.Errorf("record %+v %+v", r, r.Info)
		}
	})
}

// failOn answers like a function that fails on any batch holding body.
func failOn(body string) func([]memsource.Body) (dispatcher.Result, error) {
	return func(bodies []memsource.Body) (dispatcher.Result, error) {
		for _, b := range bodies {
			if b.Body == body {
				return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled"}, nil
			}
		}
		return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
	}
}

// bisectToDLQ is a mapping that bisects failed batches, never retries
// one, and sends what fails alone to an SQS OnFailure destination.
func bisectToDLQ() *esm.Mapping {
	return mapping(func(c *esm.Config) {
		c.MaximumRetryAttempts = ptr(int64(0))
		c.BisectBatchOnFunctionError = ptr(true)
		c.DestinationConfig = &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr("arn:aws:sqs:us-east-1:000000000000:dlq")}}
	})
}

func TestPipelineBisectIsolatesOneRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &fakeInvoker{fn: failOn("r-003")}
		dest := &fakeSender{}
		m := bisectToDLQ()
		stop := start(t, log, m, inv, dest)
		defer stop()
		produce(log, 5, 1, "r")
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the end", func() bool { return log.Checkpoint("lane-0") == 4 })
		dest.mu.Lock()
		defer dest.mu.Unlock()
		if len(dest.recs) != 1 || kinesisInfo(t, dest.recs[0]).BatchSize != 1 || kinesisInfo(t, dest.recs[0]).StartSequenceNumber != "3" {
			t.Fatalf("OnFailure records %+v", dest.recs)
		}
	})
}

// A pipeline stopped in the middle (a crash or a disable) never skips a
// record: the next one delivers everything not done, at least once.
func TestPipelineRestartDeliversAtLeastOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(2)
		var mu sync.Mutex
		slow := true
		inv := &fakeInvoker{}
		inv.fn = func([]memsource.Body) (dispatcher.Result, error) {
			mu.Lock()
			s := slow
			mu.Unlock()
			if s {
				time.Sleep(2 * time.Millisecond) // the function's work (fake time): the stop finds batches in flight
			}
			return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
		}
		want := produce(log, 200, 8, "r")
		stop := start(t, log, mapping(nil), inv, nil)
		testenv.EventuallyTrue(t, 10*time.Second, "some records delivered", func() bool { return len(inv.delivered()) > 20 })
		stop()
		mu.Lock()
		slow = false
		mu.Unlock()
		stop = start(t, log, mapping(nil), inv, nil)
		defer stop()
		testenv.EventuallyTrue(t, 10*time.Second, "every record delivered", func() bool { return len(inv.delivered()) == len(want) })
	})
}

func TestRetryPolicyFromMapping(t *testing.T) {
	dest := &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr("kafka://dlq")}}
	cases := []struct {
		name  string
		src   esm.Source
		retry int64
		dest  *esm.DestinationConfig
		want  int64
	}{
		{"kafka infinite with destination is capped at 10 (KAF-10)", esm.SourceKafka, -1, dest, 10},
		{"msk infinite with destination", esm.SourceMSK, -1, dest, 10},
		{"kafka infinite without destination", esm.SourceKafka, -1, nil, -1},
		{"kafka explicit", esm.SourceKafka, 3, dest, 3},
		{"kinesis infinite with destination", esm.SourceKinesis, -1, dest, -1},
	}
	for _, tc := range cases {
		m := mapping(func(c *esm.Config) { c.MaximumRetryAttempts = ptr(tc.retry); c.DestinationConfig = tc.dest })
		m.Source = tc.src
		r := &Runner{Source: descriptorFor(tc.src)}
		if got := r.RetryPolicy(m).MaxRetryAttempts; got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// Tumbling windows through the pipeline: the state the function returns is
// sent with the next invocation of the same window, and a response without
// state is a failed invocation (STR-32).
func TestPipelineTumblingWindowState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		var mu sync.Mutex
		var states []string
		calls := 0
		inv := dispatcher.InvokerFunc(func(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
			var ev struct {
				Records []json.RawMessage `json:"Records"`
				State   json.RawMessage   `json:"state"`
				Window  *struct {
					Start string `json:"start"`
					End   string `json:"end"`
				} `json:"window"`
				ShardID string `json:"shardId"`
			}
			if err := json.Unmarshal(payload, &ev); err != nil || ev.Window == nil || ev.ShardID != "lane-0" {
				return dispatcher.Result{}, fmt.Errorf("not a window event: %s", payload)
			}
			mu.Lock()
			defer mu.Unlock()
			calls++
			states = append(states, string(ev.State))
			if calls == 2 {
				// No state: a failed invocation, retried with the same state.
				return dispatcher.Result{StatusCode: 200, Payload: []byte(`{}`)}, nil
			}
			var st struct{ Count int }
			json.Unmarshal(ev.State, &st)
			return dispatcher.Result{StatusCode: 200, Payload: fmt.Appendf(nil, `{"state":{"count":%d}}`, st.Count+len(ev.Records))}, nil
		})
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(2))
			c.TumblingWindowInSeconds = ptr(int64(900))
		})
		// The "a" records are in the log before the pipeline starts, so
		// the first poll hands both over: one batch of 2.
		t0 := time.Now()
		produce(log, 2, 1, "a")
		stop := start(t, log, m, inv, nil)
		defer stop()
		testenv.EventuallyTrue(t, 10*time.Second, "first batch done", func() bool { return log.Checkpoint("lane-0") == 1 })
		produce(log, 2, 1, "b")
		t1 := time.Now()
		testenv.EventuallyTrue(t, 10*time.Second, "second batch done", func() bool { return log.Checkpoint("lane-0") == 3 })
		mu.Lock()
		defer mu.Unlock()
		// The bubble's clock starts on a window boundary and moves only
		// while the test polls: both productions are in one window.
		if !t0.Truncate(900 * time.Second).Equal(t1.Truncate(900 * time.Second)) {
			t.Fatalf("the records fell in two 15-minute windows (%v, %v); states %v", t0, t1, states)
		}
		// {} -> count 2 (the answer without state failed) -> retried with count 2.
		// The "b" records are produced one by one, so the poller may hand them
		// over in two batches: then a fourth invocation carries count 3.
		if len(states) == 4 && states[3] == `{"count":3}` {
			states = states[:3]
		}
		if len(states) != 3 || states[0] != "{}" || states[1] != `{"count":2}` || states[2] != `{"count":2}` {
			t.Fatalf("states sent: %v", states)
		}
	})
}

// A window whose records were all sent before it ended still gets its
// final invocation, without records (STR-31): the batcher hands it over as
// a batch of none, which must reach the function.
func TestPipelineWindowFinalInvocationWithoutRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		type call struct {
			records int
			final   bool
			start   string
		}
		var mu sync.Mutex
		var calls []call
		inv := dispatcher.InvokerFunc(func(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
			var ev struct {
				Records []json.RawMessage `json:"Records"`
				Window  struct {
					Start string `json:"start"`
				} `json:"window"`
				Final bool `json:"isFinalInvokeForWindow"`
			}
			if err := json.Unmarshal(payload, &ev); err != nil {
				return dispatcher.Result{}, err
			}
			mu.Lock()
			calls = append(calls, call{len(ev.Records), ev.Final, ev.Window.Start})
			mu.Unlock()
			return dispatcher.Result{StatusCode: 200, Payload: []byte(`{"state":{}}`)}, nil
		})
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(100))
			c.TumblingWindowInSeconds = ptr(int64(1))
		})
		stop := start(t, log, m, inv, nil)
		defer stop()
		produce(log, 3, 1, "a")
		testenv.EventuallyTrue(t, 10*time.Second, "the records delivered", func() bool { return log.Checkpoint("lane-0") == 2 })
		// The next window's records end the first one at once (without them,
		// AWS waits up to 2 minutes).
		mu.Lock()
		first, err := time.Parse(time.RFC3339, calls[0].start)
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		// The next window (fake time: the sleep is the scenario, not a
		// wait for the pipeline).
		time.Sleep(time.Until(first.Add(time.Second + 10*time.Millisecond)))
		produce(log, 3, 1, "b")
		testenv.EventuallyTrue(t, 10*time.Second, "a final invocation of the first window", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range calls {
				if c.final && c.start == calls[0].start {
					return true
				}
			}
			return false
		})
		mu.Lock()
		defer mu.Unlock()
		// The "a" records may come in more than one batch (they are produced
		// one by one), all in the first window; the "b" ones in the next.
		inFirst := 0
		for _, c := range calls {
			if c.start == calls[0].start {
				inFirst += c.records
			}
		}
		if inFirst != 3 {
			t.Errorf("the first window's invocations carry %d records, want 3: %+v", inFirst, calls)
		}
	})
}

// releasingInvoker is a fakeInvoker that says it reads a payload only
// until Invoke returns, and then scribbles over it, as a reuse of the
// memory by the pipeline would; it counts payloads whose memory it saw
// before.
type releasingInvoker struct {
	fakeInvoker
	seen   map[*byte]bool
	reused int
}

func (r *releasingInvoker) ReleasesPayload() bool { return true }

func (r *releasingInvoker) Invoke(ctx context.Context, fn string, payload []byte) (dispatcher.Result, error) {
	res, err := r.fakeInvoker.Invoke(ctx, fn, payload)
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[*byte]bool{}
	}
	p := unsafe.SliceData(payload)
	if r.seen[p] {
		r.reused++
	}
	r.seen[p] = true
	r.mu.Unlock()
	for i := range payload {
		payload[i] = '#'
	}
	return res, err
}

// TestPipelineReusesEventsWithReleasingInvoker: with an Invoker that
// releases payloads, events are built in reused memory, whole batches and
// bisected halves alike, and every event is still exact.
func TestPipelineReusesEventsWithReleasingInvoker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &releasingInvoker{}
		inv.fn = failOn("r-013")
		dest := &fakeSender{}
		m := bisectToDLQ()
		stop := start(t, log, m, inv, dest)
		defer stop()
		want := produce(log, 200, 1, "r")
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the end", func() bool { return log.Checkpoint("lane-0") == 199 })
		got := inv.delivered()
		for _, b := range want {
			if got[b] == 0 && b != "r-013" {
				t.Errorf("%s was never delivered", b)
			}
		}
		dest.mu.Lock()
		defer dest.mu.Unlock()
		if len(dest.recs) != 1 || kinesisInfo(t, dest.recs[0]).BatchSize != 1 || kinesisInfo(t, dest.recs[0]).StartSequenceNumber != "13" {
			t.Fatalf("OnFailure records %+v", dest.recs)
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		if inv.reused == 0 {
			t.Fatalf("no event memory was reused over %d invocations", len(inv.seen))
		}
	})
}

// descriptorFor returns the real descriptor of a source, so that the
// pipeline is tested with what each source tells it (envelope, delivery,
// partial responses, OnFailure batch info, retry limits).
func descriptorFor(src esm.Source) *source.Descriptor {
	switch src {
	case esm.SourceSQS:
		return sqs.Descriptor()
	case esm.SourceKafka:
		return kafka.SelfManagedDescriptor()
	case esm.SourceMSK:
		return kafka.MSKDescriptor()
	case esm.SourceDynamoDB:
		return dynamodbstreams.Descriptor()
	}
	return kinesis.Descriptor()
}

// kinesisInfo returns the KinesisBatchInfo of an OnFailure record.
func kinesisInfo(t *testing.T, r *destination.Record) *stream.BatchInfo {
	t.Helper()
	info, ok := r.Info.(*stream.BatchInfo)
	if !ok || info.Member != stream.KinesisBatchInfo {
		t.Fatalf("OnFailure record without KinesisBatchInfo: %+v", r.Info)
	}
	return info
}

// TestPipelineLaneEnd: a lane whose poller reports it ended (a shard read
// to its end, source.LaneEnder) has its buffered records invoked at once
// instead of after the batching window.
func TestPipelineLaneEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &fakeInvoker{}
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(100))
			c.MaximumBatchingWindowInSeconds = ptr(int64(300))
		})
		want := produce(log, 3, 1, "end")
		stop := start(t, log, m, inv, nil)
		defer stop()
		// Every goroutine of the bubble idle: the records are buffered
		// and the batcher waits for its 300 s window.
		synctest.Wait()
		if n := len(inv.delivered()); n != 0 {
			t.Fatalf("%d records invoked before the 300 s window or the lane's end", n)
		}
		log.End("lane-0")
		testenv.EventuallyTrue(t, 10*time.Second, "the ended lane's records invoked", func() bool { return len(inv.delivered()) == len(want) })
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the lane's last record", func() bool { return log.Checkpoint("lane-0") == len(want)-1 })
	})
}

// blockingInvoker holds every invocation until release is closed or its
// context ends, and says when the first one started.
type blockingInvoker struct {
	started chan struct{}
	once    sync.Once
	release chan struct{}
	mu      sync.Mutex
	err     error // the context error an invocation saw
}

func newBlockingInvoker() *blockingInvoker {
	return &blockingInvoker{started: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingInvoker) Invoke(ctx context.Context, _ string, _ []byte) (dispatcher.Result, error) {
	b.once.Do(func() { close(b.started) })
	select {
	case <-b.release:
		return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
	case <-ctx.Done():
		b.mu.Lock()
		b.err = ctx.Err()
		b.mu.Unlock()
		return dispatcher.Result{}, ctx.Err()
	}
}

// TestPipelineStopDrainsInFlight: a stop (disable, update, delete,
// shutdown) stops polling at once but lets the invocation in flight finish
// and be acknowledged before Run returns.
func TestPipelineStopDrainsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		want := produce(log, 5, 1, "drain")
		inv := newBlockingInvoker()
		r := &Runner{Source: descriptorFor(esm.SourceKinesis), Invoker: inv, DrainTimeout: time.Minute,
			Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, mapping(nil), &fakeReporter{}) }()
		<-inv.started
		cancel()
		synctest.Wait() // Run blocked, or returned
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) while an invocation was in flight", err)
		default:
		}
		close(inv.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if cp := log.Checkpoint("lane-0"); cp != len(want)-1 {
			t.Fatalf("checkpoint %d after the drained batch, want %d", cp, len(want)-1)
		}
		if inv.err != nil {
			t.Fatalf("the drained invocation was cancelled: %v", inv.err)
		}
	})
}

// TestPipelineStopDrainTimeout: an invocation still running when the drain
// timeout passes is cancelled, and its records are not acknowledged.
func TestPipelineStopDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		produce(log, 5, 1, "slow")
		inv := newBlockingInvoker()
		r := &Runner{Source: descriptorFor(esm.SourceKinesis), Invoker: inv, DrainTimeout: 20 * time.Millisecond,
			Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, mapping(nil), &fakeReporter{}) }()
		<-inv.started
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		if !errors.Is(inv.err, context.Canceled) {
			t.Fatalf("the invocation past the drain timeout saw %v, want it cancelled", inv.err)
		}
		if cp := log.Checkpoint("lane-0"); cp != -1 {
			t.Fatalf("checkpoint %d: records of a cancelled invocation were acknowledged", cp)
		}
	})
}

func (r *fakeReporter) result() string { r.mu.Lock(); defer r.mu.Unlock(); return r.last }

// TestPipelineProcessingResultAfterRetries: LastProcessingResult shows the
// retries' problem while a batch is retried, OK once it succeeds, and the
// problem when its records are discarded.
func TestPipelineProcessingResultAfterRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		retries int64
		fails   int
		want    string
	}{
		{"succeeds on the third attempt", -1, 2, "OK"},
		{"discarded after one retry", 1, 5, "PROBLEM: Function call failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := memsource.NewLog(1)
				produce(log, 3, 1, "r")
				var mu sync.Mutex
				calls := 0
				inv := &fakeInvoker{fn: func([]memsource.Body) (dispatcher.Result, error) {
					mu.Lock()
					defer mu.Unlock()
					if calls++; calls <= tc.fails {
						return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled", Payload: []byte(`{"errorMessage":"x"}`)}, nil
					}
					return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
				}}
				r := &Runner{Source: descriptorFor(esm.SourceKinesis), Invoker: inv,
					RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond,
					Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil }}
				rep := &fakeReporter{}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				m := mapping(func(c *esm.Config) { c.MaximumRetryAttempts = ptr(tc.retries) })
				go func() { done <- r.Run(ctx, m, rep) }()
				for log.Checkpoint("lane-0") != 2 {
					time.Sleep(time.Millisecond) // the fake clock: waits for the pipeline, not the wall
				}
				synctest.Wait()
				if got := rep.result(); got != tc.want {
					t.Errorf("LastProcessingResult %q, want %q", got, tc.want)
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// spreadPoller hands out n records per lane, interleaved: each Poll gives
// every lane per records, as a Kafka fetch of several partitions does.
// Records are `{}`, or JSON strings of size bytes.
type spreadPoller struct {
	lanes, per, n int
	size          int
	mu            sync.Mutex
	polled        int // per lane
}

func (p *spreadPoller) Poll(ctx context.Context) ([]source.Record, error) {
	p.mu.Lock()
	if p.polled >= p.n {
		p.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var out []source.Record
	for l := range p.lanes {
		for i := p.polled; i < p.polled+p.per; i++ {
			seq := strconv.Itoa(i)
			data := []byte(`{}`)
			if p.size > 2 {
				data = []byte(`"` + strings.Repeat("x", p.size-2) + `"`)
			}
			out = append(out, source.Record{Lane: "lane-" + strconv.Itoa(l), ID: seq, Seq: seq, Data: data})
		}
	}
	p.polled += p.per
	p.mu.Unlock()
	return out, nil
}

func (p *spreadPoller) Ack(context.Context, []source.Record, error) error { return nil }
func (p *spreadPoller) Close() error                                      { return nil }

// countingInvoker records the number of records of each event.
type countingInvoker struct {
	mu    sync.Mutex
	sizes []int
}

func (c *countingInvoker) Invoke(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct{ Records []json.RawMessage }
	if err := json.Unmarshal(payload, &ev); err != nil {
		return dispatcher.Result{}, err
	}
	c.mu.Lock()
	c.sizes = append(c.sizes, len(ev.Records))
	c.mu.Unlock()
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

// TestPipelineBuffersABatchPerLane: with the default bounds, eight lanes
// whose records arrive interleaved each fill a whole batch instead of
// waiting for the batching window with part of one: the record bound
// (batches of 10,000, twice the 4-batch default) and the byte bound (8 KiB
// records, 6.4 MiB in all against the 4 MiB default) are both raised to two
// batches per lane.
func TestPipelineBuffersABatchPerLane(t *testing.T) {
	for _, tc := range []struct {
		name            string
		batch, per, rec int
	}{
		{"records", 10000, 500, 0},
		{"bytes", 100, 10, 8 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const lanes = 8
				inv := &countingInvoker{}
				m := mapping(func(c *esm.Config) {
					c.BatchSize = ptr(int64(tc.batch))
					c.MaximumBatchingWindowInSeconds = ptr(int64(300))
				})
				r := &Runner{Source: descriptorFor(esm.SourceKinesis), Invoker: inv,
					Open: func(context.Context, *esm.Mapping) (source.Poller, error) {
						return &spreadPoller{lanes: lanes, per: tc.per, n: tc.batch, size: tc.rec}, nil
					}}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
				defer func() {
					cancel()
					if err := <-done; err != nil {
						t.Error(err)
					}
				}()
				// Well within the 300 s window: only full batches come this soon.
				testenv.EventuallyTrue(t, 10*time.Second, "eight invocations", func() bool {
					inv.mu.Lock()
					defer inv.mu.Unlock()
					return len(inv.sizes) >= lanes
				})
				inv.mu.Lock()
				defer inv.mu.Unlock()
				for i, n := range inv.sizes[:lanes] {
					if n != tc.batch {
						t.Fatalf("invocation %d of %d records, want full batches of %d: %v", i, n, tc.batch, inv.sizes)
					}
				}
			})
		})
	}
}
