package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

// recorder wraps the real invoker and keeps every event the function got.
type recorder struct {
	inv    dispatcher.Invoker
	mu     sync.Mutex
	events []events.KafkaEvent
}

func (r *recorder) Invoke(ctx context.Context, fn string, payload []byte) (dispatcher.Result, error) {
	var ev events.KafkaEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return dispatcher.Result{}, fmt.Errorf("event is not a KafkaEvent: %w", err)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return r.inv.Invoke(ctx, fn, payload)
}

type reporter struct {
	mu   sync.Mutex
	last string
}

func (r *reporter) ProcessingResult(s string) { r.mu.Lock(); r.last = s; r.mu.Unlock() }
func (r *reporter) Disable(string)            {}

// TestPipelineOnFailureToKafkaTopic runs a self-managed Kafka mapping
// through the whole data plane: this poller on kfake, the function
// (aws-lambda-go under the Runtime Interface Emulator) failing on one
// record, MaximumRetryAttempts 1, a FilterCriteria on value, and an
// OnFailure kafka:// destination. The failed batch lands on the
// destination topic with its records, every partition reaches the function
// in offset order, filtered-out records are never invoked, and the group's
// offsets end past every record (KAF-5, KAF-17).
func TestPipelineOnFailureToKafkaTopic(t *testing.T) {
	testenv.Skip(t)
	s := seeds(t)
	rie := testenv.RIE(t)
	topic := newTopic(t, s, 2)
	dlq := newTopic(t, s, 1)
	prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const n = 12
	for i := range n {
		for pt := range int32(2) {
			v := fmt.Sprintf(`{"n":%d,"keep":%v}`, i, i%3 != 2)
			if pt == 0 && i == 4 {
				v = `{"testfn":{"mode":"error","errorMessage":"record 4 is bad"},"keep":true}`
			}
			produce(t, prod, &kgo.Record{Partition: pt, Key: []byte("k" + strconv.Itoa(int(pt))), Value: []byte(v)})
		}
	}
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(rie), dispatcher.WithMode(dispatcher.ModeRIE))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	rec := &recorder{inv: inv}
	dest := client(t, s)
	m := smk(s, topic)
	m.UUID = "pipeline-" + topic
	m.FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:function"
	m.Config.BatchSize = ptr(int64(2))
	m.Config.MaximumRetryAttempts = ptr(int64(1))
	m.Config.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptr(`{"value":{"keep":[true]}}`)}}}
	m.Config.DestinationConfig = &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr("kafka://" + dlq)}}
	cfg, err := ConfigFor(context.Background(), m, Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.CommitInterval = 50 * time.Millisecond
	r := &pipeline.Runner{Source: SelfManagedDescriptor(),
		Open:       func(ctx context.Context, _ *esm.Mapping) (source.Poller, error) { return New(ctx, cfg) },
		Invoker:    rec,
		RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond,
		Destination: func(d string, m *esm.Mapping) (destination.Sender, error) {
			return destination.New(d, m.UUID, destination.Clients{Kafka: dest})
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rep := &reporter{}
	go func() { done <- r.Run(ctx, m, rep) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		for pt := range int32(2) {
			if c := committed(t, s, cfg.Group, topic, pt); c != n {
				return fmt.Errorf("partition %d committed at %d", pt, c)
			}
		}
		return nil
	})

	// The destination holds the failed batch: the record that failed and
	// its batch mate (which one depends on the batching window), with
	// metadata and the records themselves.
	cons := client(t, s, kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	fs := cons.PollFetches(pctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	msgs := fs.Records()
	if len(msgs) != 1 {
		t.Fatalf("%d destination messages, want 1", len(msgs))
	}
	var body struct {
		RequestContext struct {
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		ResponseContext struct {
			FunctionError string `json:"functionError"`
		} `json:"responseContext"`
		KafkaBatchInfo struct {
			BatchSize int `json:"batchSize"`
		} `json:"KafkaBatchInfo"`
		Payload events.KafkaEvent `json:"payload"`
	}
	if err := json.Unmarshal(msgs[0].Value, &body); err != nil {
		t.Fatalf("destination message: %v\n%s", err, msgs[0].Value)
	}
	lane0 := topic + "-0"
	got := body.Payload.Records[lane0]
	if body.RequestContext.Condition != "RetryAttemptsExhausted" || body.RequestContext.ApproximateInvokeCount != 2 ||
		body.ResponseContext.FunctionError != "Unhandled" || body.KafkaBatchInfo.BatchSize != 2 ||
		body.Payload.EventSource != "SelfManagedKafka" || len(got) != 2 || !slices.ContainsFunc(got, func(r events.KafkaRecord) bool { return r.Offset == 4 }) {
		t.Fatalf("destination message:\n%s", msgs[0].Value)
	}

	// Per partition, the function saw offsets in order (retries repeat a
	// batch, never go back past it), and never a filtered-out record.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string][]int64{}
	for _, ev := range rec.events {
		for lane, rs := range ev.Records {
			for _, kr := range rs {
				if kr.Offset%3 == 2 {
					t.Errorf("%s offset %d was filtered out but invoked", lane, kr.Offset)
				}
				if prev := seen[lane]; len(prev) > 0 && kr.Offset < prev[len(prev)-1] && !slices.Contains(prev, kr.Offset) {
					t.Errorf("%s: offset %d after %d", lane, kr.Offset, prev[len(prev)-1])
				}
				seen[lane] = append(seen[lane], kr.Offset)
			}
		}
	}
	for lane, offs := range seen {
		slices.Sort(offs)
		offs = slices.Compact(offs)
		if want := n - n/3; len(offs) != want {
			t.Errorf("%s: function saw %d distinct records, want %d", lane, len(offs), want)
		}
	}
}

// TestPipelinePartialBatchResponse is the Kafka partial batch response of
// spec KAF-13: {"batchItemFailures":[{"itemIdentifier":{"partition":
// "<topic>-<n>","offset":N}}]} delivers the records before offset N and
// retries the partition from N.
func TestPipelinePartialBatchResponse(t *testing.T) {
	testenv.Skip(t)
	s := seeds(t)
	rie := testenv.RIE(t)
	topic := newTopic(t, s, 1)
	lane := topic + "-0"
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	for i := range 6 {
		v := fmt.Sprintf(`{"n":%d}`, i)
		if i == 0 {
			v = fmt.Sprintf(`{"testfn":{"mode":"return","body":{"batchItemFailures":[{"itemIdentifier":{"partition":%q,"offset":3}}]}}}`, lane)
		}
		produce(t, prod, &kgo.Record{Value: []byte(v)})
	}
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(rie), dispatcher.WithMode(dispatcher.ModeRIE))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	rec := &recorder{inv: inv}
	m := smk(s, topic)
	m.UUID = "partial-" + topic
	m.FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:function"
	m.Config.BatchSize = ptr(int64(6))
	m.Config.MaximumRetryAttempts = ptr(int64(2))
	m.Config.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
	cfg, err := ConfigFor(context.Background(), m, Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.CommitInterval = 50 * time.Millisecond
	r := &pipeline.Runner{Source: SelfManagedDescriptor(), Invoker: rec, RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond,
		Open: func(ctx context.Context, _ *esm.Mapping) (source.Poller, error) { return New(ctx, cfg) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, &reporter{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if c := committed(t, s, cfg.Group, topic, 0); c != 6 {
			return fmt.Errorf("committed at %d", c)
		}
		return nil
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got [][]int64
	for _, ev := range rec.events {
		var offs []int64
		for _, kr := range ev.Records[lane] {
			offs = append(offs, kr.Offset)
		}
		got = append(got, offs)
	}
	if fmt.Sprint(got) != "[[0 1 2 3 4 5] [3 4 5]]" {
		t.Fatalf("invocations %v, want [[0 1 2 3 4 5] [3 4 5]]", got)
	}
}
