package sqs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

// The tests in this file run mappings through the real pipeline
// (pipeline.Runner: filter, batcher, invoker, acknowledgement) against
// fauxqs, with the function on a real Lambda runtime (internal/testfn under
// aws-lambda-rie).

const functionArn = "arn:aws:lambda:us-east-1:000000000000:function:function"

// invocation is one record of one event the function was invoked with.
type invocation struct {
	ID, Body, Count string
}

// recorder wraps the RIE invoker and remembers every event, by queue ARN.
type recorder struct {
	inv dispatcher.Invoker
	mu  sync.Mutex
	by  map[string][][]invocation
}

func newRecorder(t *testing.T) *recorder {
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(testenv.RIE(t)), dispatcher.WithMode(dispatcher.ModeRIE))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	return &recorder{inv: inv, by: map[string][][]invocation{}}
}

func (r *recorder) Invoke(ctx context.Context, fn string, payload []byte) (dispatcher.Result, error) {
	var ev struct {
		Records []struct {
			MessageID  string            `json:"messageId"`
			Body       string            `json:"body"`
			Attributes map[string]string `json:"attributes"`
			ARN        string            `json:"eventSourceARN"`
		}
	}
	if err := json.Unmarshal(payload, &ev); err == nil && len(ev.Records) > 0 {
		var batch []invocation
		for _, rec := range ev.Records {
			batch = append(batch, invocation{rec.MessageID, rec.Body, rec.Attributes["ApproximateReceiveCount"]})
		}
		r.mu.Lock()
		r.by[ev.Records[0].ARN] = append(r.by[ev.Records[0].ARN], batch)
		r.mu.Unlock()
	}
	return r.inv.Invoke(ctx, fn, payload)
}

// batches returns the events a queue's mapping invoked the function with.
func (r *recorder) batches(arn string) [][]invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]invocation(nil), r.by[arn]...)
}

// counts returns, per body, the ApproximateReceiveCounts it was invoked
// with, in order.
func (r *recorder) counts(arn string) map[string][]string {
	out := map[string][]string{}
	for _, b := range r.batches(arn) {
		for _, i := range b {
			out[i.Body] = append(out[i.Body], i.Count)
		}
	}
	return out
}

type reporter struct {
	mu   sync.Mutex
	last string
}

func (r *reporter) ProcessingResult(s string) { r.mu.Lock(); r.last = s; r.mu.Unlock() }
func (r *reporter) Disable(string)            {}

// run runs a mapping through the pipeline until the returned stop is
// called (the test's cleanup calls it too).
func run(t *testing.T, f *fauxqs, inv dispatcher.Invoker, m *esm.Mapping) (stop func()) {
	t.Helper()
	if m.FunctionArn == "" {
		m.FunctionArn = functionArn
	}
	r := &pipeline.Runner{Source: Descriptor(),
		Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
			p, err := Open(ctx, f.cfg, m, WithBackoff(20*time.Millisecond, 500*time.Millisecond))
			if err != nil {
				return nil, err
			}
			return p, nil
		},
		Invoker: inv,
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

// TestDeleteOnSuccess: every message reaches the function once, in batches
// of at most BatchSize, and is deleted.
func TestDeleteOnSuccess(t *testing.T) {
	f := newFauxqs(t)
	rec := newRecorder(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	var bodies []string
	for i := range 35 {
		bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
	}
	f.sendBatch(t, url, bodies)
	run(t, f, rec, mapping(arn, 10))
	f.waitEmpty(t, url, 20*time.Second)
	counts := rec.counts(arn)
	for _, b := range bodies {
		if c := counts[b]; len(c) != 1 || c[0] != "1" {
			t.Errorf("%s: invoked with receive counts %v, want [1]", b, c)
		}
	}
	for _, b := range rec.batches(arn) {
		if len(b) > 10 {
			t.Errorf("batch of %d records with BatchSize 10", len(b))
		}
	}
}

// TestBatchSizes: BatchSize 1, 10, 100 and 10,000 (the last two with a
// window, as AWS requires above 10) on pre-filled queues: batches never
// pass BatchSize, and with a window messages received over many receives
// are gathered into full batches (the recording's batch_size[15]: 15
// messages, one invocation).
func TestBatchSizes(t *testing.T) {
	f := newFauxqs(t)
	rec := newRecorder(t)
	type tc struct {
		batch, window int64
		messages      int
		batches       int // expected number of invocations, 0: not checked
	}
	cases := []tc{{1, 0, 12, 12}, {10, 0, 35, 0}, {100, 1, 150, 2}, {100, 1, 15, 1}, {10000, 1, 600, 1}}
	type q struct {
		tc
		url, arn string
	}
	var qs []q
	for _, c := range cases {
		url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
		var bodies []string
		for i := range c.messages {
			bodies = append(bodies, fmt.Sprintf(`{"w":%d}`, i))
		}
		f.sendBatch(t, url, bodies)
		m := mapping(arn, c.batch)
		if c.window > 0 {
			m.Config.MaximumBatchingWindowInSeconds = aws.Int64(c.window)
		}
		run(t, f, rec, m)
		qs = append(qs, q{c, url, arn})
	}
	for _, x := range qs {
		t.Run(fmt.Sprintf("batch%d-window%d-messages%d", x.batch, x.window, x.messages), func(t *testing.T) {
			f.waitEmpty(t, x.url, 20*time.Second)
			bs := rec.batches(x.arn)
			var sizes []int
			total := 0
			for _, b := range bs {
				sizes = append(sizes, len(b))
				total += len(b)
				if len(b) > int(x.batch) {
					t.Errorf("batch of %d records with BatchSize %d", len(b), x.batch)
				}
			}
			if total != x.messages {
				t.Errorf("%d records invoked, want %d", total, x.messages)
			}
			if x.batches > 0 && len(bs) != x.batches {
				t.Errorf("batch sizes %v, want %d batches", sizes, x.batches)
			}
		})
	}
}

// TestBatchItemFailures runs every partial-batch-response case the
// recordings and spec 4.3 list, each on its own queue with a redrive policy
// (maxReceiveCount 2, visibility timeout 2 s): the messages the response
// fails are invoked a second time with ApproximateReceiveCount 2 and then
// end in the DLQ; the others are deleted after one invocation.
func TestBatchItemFailures(t *testing.T) {
	f := newFauxqs(t)
	rec := newRecorder(t)
	type tc struct {
		name      string
		directive string // the testfn directive in each failing message's body
		all       bool   // the whole batch fails
		none      bool   // nothing fails
		rbif      bool   // ReportBatchItemFailures
	}
	ret := func(body string) string { return `{"mode":"return","body":` + body + `}` }
	cases := []tc{
		{name: "partial", directive: `{"mode":"fail-self"}`, rbif: true},
		{name: "empty-list", directive: ret(`{"batchItemFailures":[]}`), none: true, rbif: true},
		{name: "null-list", directive: ret(`{"batchItemFailures":null}`), none: true, rbif: true},
		{name: "empty-object", directive: ret(`{}`), none: true, rbif: true},
		{name: "null", directive: ret(`null`), none: true, rbif: true},
		{name: "empty-string", directive: ret(`""`), none: true, rbif: true},
		{name: "invalid-key", directive: ret(`{"batchItemFailures":[{"foo":"notvalid"}]}`), all: true, rbif: true},
		{name: "empty-identifier", directive: ret(`{"batchItemFailures":[{"itemIdentifier":""}]}`), all: true, rbif: true},
		{name: "null-identifier", directive: ret(`{"batchItemFailures":[{"itemIdentifier":null}]}`), all: true, rbif: true},
		{name: "unknown-identifier", directive: ret(`{"batchItemFailures":[{"itemIdentifier":"not-in-batch"}]}`), all: true, rbif: true},
		{name: "function-error", directive: `{"mode":"error"}`, all: true, rbif: true},
		{name: "function-error-without-rbif", directive: `{"mode":"error"}`, all: true},
	}
	type q struct {
		tc
		url, arn, dlq string
		fail, ok      []string
	}
	var qs []*q
	for _, c := range cases {
		dlqURL, dlqARN := f.queue(t, false, nil)
		url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "2",
			"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, dlqARN)})
		x := &q{tc: c, url: url, arn: arn, dlq: dlqURL}
		// The directive is in every message of a failing case (so any
		// batch split fails the same way); "partial" mixes failing and
		// plain messages.
		var bodies []string
		for i := range 4 {
			b := fmt.Sprintf(`{"case":%q,"i":%d,"testfn":%s}`, c.name, i, c.directive)
			if c.name == "partial" && i%2 == 0 {
				b = fmt.Sprintf(`{"case":%q,"i":%d}`, c.name, i)
			}
			bodies = append(bodies, b)
			if c.all || c.name == "partial" && i%2 == 1 {
				x.fail = append(x.fail, b)
			} else {
				x.ok = append(x.ok, b)
			}
		}
		f.sendBatch(t, url, bodies)
		m := mapping(arn, 10)
		if c.rbif {
			m.Config.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
		}
		run(t, f, rec, m)
		qs = append(qs, x)
	}
	for _, x := range qs {
		t.Run(x.name, func(t *testing.T) {
			f.waitEmpty(t, x.url, 30*time.Second)
			dead := f.receiveAll(t, x.dlq, len(x.fail), 10*time.Second)
			var got []string
			for _, m := range dead {
				got = append(got, aws.ToString(m.Body))
			}
			sort.Strings(got)
			want := append([]string(nil), x.fail...)
			sort.Strings(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("DLQ holds %v, want %v", got, want)
			}
			counts := rec.counts(x.arn)
			for _, b := range x.fail {
				if c := counts[b]; fmt.Sprint(c) != "[1 2]" {
					t.Errorf("failing %s invoked with receive counts %v, want [1 2]", b, c)
				}
			}
			for _, b := range x.ok {
				if c := counts[b]; fmt.Sprint(c) != "[1]" {
					t.Errorf("succeeding %s invoked with receive counts %v, want [1]", b, c)
				}
			}
		})
	}
}

// TestFilteredMessagesAreDeleted: messages the filter drops never reach the
// function and are deleted (spec SQS-23), a plain-string body included
// against a JSON body pattern (the valid-json-filter recording).
func TestFilteredMessagesAreDeleted(t *testing.T) {
	f := newFauxqs(t)
	rec := newRecorder(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	bodies := []string{`{"keep":true,"n":1}`, `{"keep":false,"n":2}`, `this is a test string`, `{"keep":true,"n":4}`, `{"n":5}`}
	f.sendBatch(t, url, bodies)
	m := mapping(arn, 10)
	m.Config.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: aws.String(`{"body":{"keep":[true]}}`)}}}
	run(t, f, rec, m)
	f.waitEmpty(t, url, 20*time.Second)
	var got []string
	for b := range rec.counts(arn) {
		got = append(got, b)
	}
	sort.Strings(got)
	if want := []string{bodies[0], bodies[3]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("function saw %v, want %v", got, want)
	}
}

// TestFIFOGroupOrder: on a FIFO queue each group's messages reach the
// function in order, and a batch may mix groups (spec SQS-20). A failing
// message holds back the rest of its own group (retried first, with
// ApproximateReceiveCount 2, once its visibility timeout passes):
//
//   - with ReportBatchItemFailures naming it, the other groups of its batch
//     are deleted and carry on;
//   - with a function error the whole batch, every group in it, comes back.
//
// fauxqs returns at most one message per group per receive (SQS can return
// up to ten of a group), so here a batch never holds two messages of one
// group; the assertions hold for both (TestFIFOSettle covers several
// messages of a group in one batch).
func TestFIFOGroupOrder(t *testing.T) {
	f := newFauxqs(t)
	rie := newRecorder(t)
	for _, rbif := range []bool{true, false} {
		t.Run(fmt.Sprintf("ReportBatchItemFailures=%v", rbif), func(t *testing.T) {
			fifoGroupOrder(t, f, rie, rbif)
		})
	}
}

func fifoGroupOrder(t *testing.T, f *fauxqs, rie *recorder, rbif bool) {
	url, arn := f.queue(t, true, map[string]string{"VisibilityTimeout": "3"})
	groups := []string{"A", "B", "C"}
	for i := range 5 {
		for _, g := range groups {
			f.send(t, url, g, fmt.Sprintf(`{"g":%q,"i":%d}`, g, i))
		}
	}
	failing := `{"g":"A","i":2}`
	// The function fails A-2 on its first delivery: by naming it in a
	// partial batch response, or by failing its whole batch.
	var mu sync.Mutex
	var order []invocation // every record of every invocation, in order; Count "fail" marks the failed ones
	mixed := false         // some batch held several groups
	inv := dispatcher.InvokerFunc(func(ctx context.Context, fn string, payload []byte) (dispatcher.Result, error) {
		var ev struct {
			Records []struct {
				MessageID  string            `json:"messageId"`
				Body       string            `json:"body"`
				Attributes map[string]string `json:"attributes"`
			}
		}
		if err := json.Unmarshal(payload, &ev); err != nil {
			return dispatcher.Result{}, err
		}
		failID := ""
		for _, r := range ev.Records {
			if r.Body == failing && r.Attributes["ApproximateReceiveCount"] == "1" {
				failID = r.MessageID
			}
		}
		mu.Lock()
		for _, r := range ev.Records {
			c := r.Attributes["ApproximateReceiveCount"]
			if failID != "" && (!rbif || r.MessageID == failID) {
				c = "fail"
			}
			order = append(order, invocation{Body: r.Body, Count: c, ID: r.Attributes["MessageGroupId"]})
			mixed = mixed || r.Attributes["MessageGroupId"] != ev.Records[0].Attributes["MessageGroupId"]
		}
		mu.Unlock()
		switch {
		case failID != "" && rbif:
			return dispatcher.Result{StatusCode: 200, Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"` + failID + `"}]}`)}, nil
		case failID != "":
			return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled"}, nil
		}
		return rie.Invoke(ctx, fn, payload)
	})
	m := mapping(arn, 10)
	if rbif {
		m.Config.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
	}
	run(t, f, inv, m)
	f.waitEmpty(t, url, 30*time.Second)

	mu.Lock()
	defer mu.Unlock()
	next := map[string]int{}
	failedAt, retriedAt, lastOther := -1, -1, -1
	for k, r := range order {
		var b struct {
			G string
			I int
		}
		_ = json.Unmarshal([]byte(r.Body), &b)
		if r.ID != b.G {
			t.Fatalf("record %s has MessageGroupId %q", r.Body, r.ID)
		}
		switch {
		case r.Count == "fail":
			if r.Body == failing {
				failedAt = k
			}
			continue
		case r.Body == failing:
			retriedAt = k
			if r.Count != "2" {
				t.Errorf("retry of %s has ApproximateReceiveCount %s, want 2", failing, r.Count)
			}
		case b.G != "A":
			lastOther = k
		}
		if b.I != next[b.G] {
			t.Fatalf("group %s: message %d processed when %d was next (order %v)", b.G, b.I, next[b.G], order)
		}
		next[b.G]++
	}
	if failedAt < 0 || retriedAt < failedAt {
		t.Fatalf("A-2 failed at %d and was retried at %d", failedAt, retriedAt)
	}
	if rbif && lastOther > retriedAt {
		t.Errorf("groups B and C were held back by A's failure (last at %d, A-2 retried at %d)", lastOther, retriedAt)
	}
	if !mixed {
		t.Errorf("no batch held several groups: %v", order)
	}
	for _, g := range groups {
		if next[g] != 5 {
			t.Errorf("group %s: %d of 5 messages processed", g, next[g])
		}
	}
}

// concurrency is an Invoker that holds each invocation a little and
// records how many were in flight at once.
type concurrency struct {
	mu        sync.Mutex
	now, most int
	records   int
}

func (c *concurrency) Invoke(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct{ Records []json.RawMessage }
	_ = json.Unmarshal(payload, &ev)
	c.mu.Lock()
	c.now++
	c.most = max(c.most, c.now)
	c.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	c.now--
	c.records += len(ev.Records)
	c.mu.Unlock()
	return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
}

// TestPipelineMaximumConcurrency: with ScalingConfig.MaximumConcurrency 2
// the batcher deals a backlog to two lanes, so two invocations are in
// flight at once and never more.
func TestPipelineMaximumConcurrency(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	var bodies []string
	for i := range 200 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	f.sendBatch(t, url, bodies)
	m := mapping(arn, 10)
	m.Config.ScalingConfig = &esm.ScalingConfig{MaximumConcurrency: aws.Int64(2)}
	c := &concurrency{}
	run(t, f, c, m)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.records < len(bodies) {
			return fmt.Errorf("%d of %d records invoked", c.records, len(bodies))
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.most != 2 {
		t.Fatalf("at most %d invocations in flight, want 2", c.most)
	}
}
