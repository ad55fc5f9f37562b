package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

// testVT is the visibility timeout of the conformance queues, short so
// that the suite sees failed records come back (and succeeded ones not)
// within seconds: the poller extends it while it holds a message. It is
// the suite's Features.Redelivery; records handed back with ErrStopped
// must come back within half of it.
const testVT = 2 * time.Second

func conformanceSource(t *testing.T, fifo bool) pollertest.Source {
	f := newFauxqs(t)
	url, arn := f.queue(t, fifo, map[string]string{"VisibilityTimeout": strconv.Itoa(int(testVT / time.Second))})
	return pollertest.Source{
		Open: func(t *testing.T) source.Poller { return f.open(t, mapping(arn, 10)) },
		Produce: func(t *testing.T, key, body string) {
			group := ""
			if fifo {
				// fauxqs returns at most one message per group per receive
				// and SQS hands out no more of a group while one of its
				// messages is in flight, whereas the suite reads every record
				// before it finishes any. One group per message keeps FIFO
				// queue mechanics (dedup ids, sequence numbers, visibility)
				// under the suite; per-group order is TestFIFOGroupOrder's.
				group = key + "-" + body
			}
			f.send(t, url, group, body)
		},
		Body: func(t *testing.T, r source.Record) string { return decode(t, r).Body },
	}
}

func TestConformance(t *testing.T) {
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Queue: true, Redelivery: testVT},
		Setup:    func(t *testing.T) pollertest.Source { return conformanceSource(t, false) },
	})
}

func TestConformanceFIFO(t *testing.T) {
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Queue: true, Redelivery: testVT},
		Setup:    func(t *testing.T) pollertest.Source { return conformanceSource(t, true) },
	})
}

// recordedRecord is the record of test_message_body_and_attributes_passed_correctly
// (test_lambda_integration_sqs.snapshot.json), keys in AWS's order.
const recordedRecord = `{"messageId":"<uuid:1>","receiptHandle":"<receipt-handle:2>","body":"{\"destination\": \"<queue-url:1>\", \"fail_attempts\": 0}","attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"sent-timestamp","SenderId":"sender-id","ApproximateFirstReceiveTimestamp":"<approximate-first-receive-timestamp>"},"messageAttributes":{"WeeksOn":{"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"},"Author":{"stringValue":"John Grisham","stringListValues":[],"binaryListValues":[],"dataType":"String"},"Title":{"stringValue":"The Whistler","stringListValues":[],"binaryListValues":[],"dataType":"String"}},"md5OfMessageAttributes":"d25a6aea97eb8f585bfa92d314504a92","md5OfBody":"<md5-of-body:1>","eventSource":"aws:sqs","eventSourceARN":"arn:<partition>:sqs:<region>:111111111111:<resource:1>","awsRegion":"<region>"}`

// TestRecordedPayload sends the message of the recording to a real queue
// and checks that the record esmd builds from what SQS returns is the
// recorded one byte for byte, once the values the recording replaced with
// placeholders are replaced the same way. The md5OfMessageAttributes is not
// a placeholder: fauxqs computes it and it must match AWS's.
func TestRecordedPayload(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, nil)
	checkRecordedSource(t)
	body := `{"destination": "<queue-url:1>", "fail_attempts": 0}`
	_, err := f.c.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: &body,
		MessageAttributes: map[string]types.MessageAttributeValue{
			"Title":   {DataType: aws.String("String"), StringValue: aws.String("The Whistler")},
			"Author":  {DataType: aws.String("String"), StringValue: aws.String("John Grisham")},
			"WeeksOn": {DataType: aws.String("Number"), StringValue: aws.String("6")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	p := f.open(t, mapping(arn, 10))
	defer p.Close()
	recs := pollN(t, p, 1, 30*time.Second)
	r := recs[0]
	s := decode(t, r)
	got := string(r.Data)
	repl := []string{
		`"messageId":` + q(s.MessageID), `"messageId":"<uuid:1>"`,
		`"receiptHandle":` + q(s.ReceiptHandle), `"receiptHandle":"<receipt-handle:2>"`,
		`"SentTimestamp":` + q(s.Attributes["SentTimestamp"]), `"SentTimestamp":"sent-timestamp"`,
		`"SenderId":` + q(s.Attributes["SenderId"]), `"SenderId":"sender-id"`,
		`"ApproximateFirstReceiveTimestamp":` + q(s.Attributes["ApproximateFirstReceiveTimestamp"]), `"ApproximateFirstReceiveTimestamp":"<approximate-first-receive-timestamp>"`,
		`"md5OfBody":` + q(s.MD5OfBody), `"md5OfBody":"<md5-of-body:1>"`,
		q(arn), `"arn:<partition>:sqs:<region>:111111111111:<resource:1>"`,
		`"awsRegion":"us-east-1"`, `"awsRegion":"<region>"`,
	}
	got = strings.NewReplacer(repl...).Replace(got)
	if got != recordedRecord {
		t.Errorf("record differs from the recording\n got: %s\nwant: %s", got, recordedRecord)
	}
	if r.ID != s.MessageID || r.Arrival.IsZero() {
		t.Errorf("record metadata: ID %q Arrival %v", r.ID, r.Arrival)
	}
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	f.waitEmpty(t, url, 5*time.Second)
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// checkRecordedSource checks recordedRecord against the recording
// (testdata/conformance/aws-recordings, see testdata/conformance/SOURCES.md).
func checkRecordedSource(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "conformance", "aws-recordings", "test_lambda_integration_sqs.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]struct {
		Content struct {
			First struct {
				Messages []struct {
					Body struct {
						Event struct {
							Records []json.RawMessage `json:"Records"`
						} `json:"event"`
					} `json:"Body"`
				} `json:"Messages"`
			} `json:"first_attempt"`
		} `json:"recorded-content"`
	}
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	for k, v := range snap {
		if strings.HasSuffix(k, "::test_message_body_and_attributes_passed_correctly") {
			var a, b any
			_ = json.Unmarshal(v.Content.First.Messages[0].Body.Event.Records[0], &a)
			_ = json.Unmarshal([]byte(recordedRecord), &b)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("recordedRecord is not the recording's record:\n%s", v.Content.First.Messages[0].Body.Event.Records[0])
			}
			return
		}
	}
	t.Fatal("recording test_message_body_and_attributes_passed_correctly not found")
}

// noneVisible fails t if a plain receive gets a message of url during d
// (a negative check: it takes all of d).
func noneVisible(t *testing.T, f *fauxqs, url string, d time.Duration) {
	t.Helper()
	testenv.Consistently(t, d, func(ctx context.Context) error {
		out, err := f.c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if len(out.Messages) > 0 {
			return fmt.Errorf("message %s visible while the poller holds it", aws.ToString(out.Messages[0].Body))
		}
		return nil
	})
}

// TestVisibilityExtended: a message held longer than the queue's visibility
// timeout is not handed out again; once Failed it is visible at once (its
// deadline without extensions passed), with ApproximateReceiveCount 2.
func TestVisibilityExtended(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "1"})
	f.send(t, url, "", "held")
	p := f.open(t, mapping(arn, 10))
	defer p.Close()
	recs := pollN(t, p, 1, 10*time.Second)
	// The pause is the check: 3.5 s is more than three of the queue's 1 s
	// visibility timeouts, so the message would be visible again unless
	// the poller kept extending it.
	noneVisible(t, f, url, 3500*time.Millisecond)
	if err := p.Failed(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	again := pollN(t, p, 1, 3*time.Second)
	if c := decode(t, again[0]).Attributes["ApproximateReceiveCount"]; c != "2" {
		t.Fatalf("after Failed: ApproximateReceiveCount %s, want 2", c)
	}
	if err := p.Done(context.Background(), again); err != nil {
		t.Fatal(err)
	}
}

// TestFailedWhileStoppingReleases: records Failed with a cancelled context
// (the pipeline is stopping) are visible again at once.
func TestFailedWhileStoppingReleases(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	f.send(t, url, "", "stopping")
	p := f.open(t, mapping(arn, 10))
	defer p.Close()
	recs := pollN(t, p, 1, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Failed(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Received again long before the 30 s timeout.
	again := pollN(t, p, 1, 5*time.Second)
	if err := p.Done(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	f.waitEmpty(t, url, 5*time.Second)
}

// TestMaximumConcurrency: with ScalingConfig.MaximumConcurrency the
// receivers never pass it (the invocations in flight are the pipeline's:
// TestPipelineMaximumConcurrency).
func TestMaximumConcurrency(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	var bodies []string
	for i := range 300 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	f.sendBatch(t, url, bodies)
	m := mapping(arn, 10)
	m.Config.ScalingConfig = &esm.ScalingConfig{MaximumConcurrency: aws.Int64(2)}
	p := f.open(t, m)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := 0; n < len(bodies); {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		if r := p.Receivers(); r > 2 {
			t.Fatalf("%d receivers with MaximumConcurrency 2", r)
		}
		n += len(recs)
		if err := p.Done(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReceiversScale: receivers shrink to the floor while long polls come
// back empty, and grow towards the ceiling with a backlog and a pipeline
// waiting for records. (Long polls are shortened to 1 s here.)
func TestReceiversScale(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "30"})
	p := f.open(t, mapping(arn, 10), WithReceivers(1, 4, 4), func(o *options) { o.wait = 1; o.growEvery = 10 * time.Millisecond })
	defer p.Close()
	testenv.Eventually(t, 5*time.Second, func(context.Context) error {
		if r := p.Receivers(); r > 1 {
			return fmt.Errorf("%d receivers on an empty queue, want 1", r)
		}
		return nil
	})
	// And no fewer than the floor, however many long polls come back
	// empty together. A negative check needs a pause: 1.5 s is more than
	// a round of the 1 s long polls.
	testenv.Consistently(t, 1500*time.Millisecond, func(context.Context) error {
		if r := p.Receivers(); r != 1 {
			return fmt.Errorf("%d receivers, want the floor of 1", r)
		}
		return nil
	})
	var bodies []string
	for i := range 1500 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	f.sendBatch(t, url, bodies)
	peak := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; n < len(bodies); {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		peak = max(peak, p.Receivers())
		n += len(recs)
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Done(context.Background(), recs) }()
	}
	if peak < 2 || peak > 4 {
		t.Errorf("peak receivers %d, want 2..4", peak)
	}
}

// TestCheckSource: a queue that does not exist refuses the mapping with
// AWS's error; an existing one with a visibility timeout shorter than the
// function's timeout is accepted with a warning.
func TestCheckSource(t *testing.T) {
	f := newFauxqs(t)
	_, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "5"})
	var logs strings.Builder
	var mu sync.Mutex
	r := &Checker{Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)), AWS: f.cfg,
		FunctionTimeout: func(context.Context, string) (time.Duration, error) { return 10 * time.Second, nil }}
	missing := "arn:aws:sqs:us-east-1:000000000000:no-such-queue"
	err := r.CheckSource(context.Background(), esm.SourceSQS, &esm.Config{FunctionName: aws.String("f"), EventSourceArn: &missing})
	var ee *esm.Error
	if !errors.As(err, &ee) || ee.Status != 400 || ee.Type != esm.ErrTypeInvalidParameterValue || ee.Message != NonExistentQueueMessage {
		t.Fatalf("missing queue: %v", err)
	}
	if err := r.CheckSource(context.Background(), esm.SourceSQS, &esm.Config{FunctionName: aws.String("f"), EventSourceArn: &arn}); err != nil {
		t.Fatalf("existing queue: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "visibility timeout is shorter") {
		t.Errorf("no warning about the visibility timeout; logs: %s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
