package sqs

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fauxqs is the real SQS server of a test (testenv's, shared by the
// package) with a client.
type fauxqs struct {
	cfg aws.Config
	c   *awssqs.Client
}

func newFauxqs(t testing.TB) *fauxqs {
	t.Helper()
	cfg := testenv.AWSConfig(testenv.FauxQS(t))
	return &fauxqs{cfg: cfg, c: awssqs.NewFromConfig(cfg)}
}

var queueSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// queue makes a new queue named after the test and returns its URL and ARN.
func (f *fauxqs) queue(t testing.TB, fifo bool, attrs map[string]string) (string, string) {
	t.Helper()
	name := unsafeName.ReplaceAllString(t.Name(), "-")
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-"), queueSeq.Add(1))
	a := map[string]string{}
	for k, v := range attrs {
		a[k] = v
	}
	if fifo {
		name += ".fifo"
		a["FifoQueue"] = "true"
	}
	ctx := context.Background()
	out, err := f.c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: &name, Attributes: a})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	return *out.QueueUrl, f.arn(t, *out.QueueUrl)
}

func (f *fauxqs) arn(t testing.TB, url string) string {
	t.Helper()
	out, err := f.c.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes["QueueArn"]
}

// send sends a message; group is the FIFO MessageGroupId ("" for standard
// queues), deduplicated by body.
func (f *fauxqs) send(t testing.TB, url, group, body string) {
	t.Helper()
	in := &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: &body}
	if group != "" {
		in.MessageGroupId = &group
		in.MessageDeduplicationId = aws.String(fmt.Sprintf("%x", body))
		if len(*in.MessageDeduplicationId) > 128 {
			*in.MessageDeduplicationId = (*in.MessageDeduplicationId)[:128]
		}
	}
	if _, err := f.c.SendMessage(context.Background(), in); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// sendBatch sends bodies to a standard queue, 10 per call.
func (f *fauxqs) sendBatch(t testing.TB, url string, bodies []string) {
	t.Helper()
	for i := 0; i < len(bodies); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j, b := range bodies[i:min(i+10, len(bodies))] {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(b)})
		}
		out, err := f.c.SendMessageBatch(context.Background(), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil {
			t.Fatalf("send batch: %v", err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("send batch: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
	}
}

// count returns the queue's visible and in-flight message counts.
func (f *fauxqs) count(t testing.TB, url string) (visible, inflight int) {
	t.Helper()
	out, err := f.c.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &visible)
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessagesNotVisible"], &inflight)
	return visible, inflight
}

// waitEmpty waits until the queue has no message, visible or in flight.
func (f *fauxqs) waitEmpty(t testing.TB, url string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func(context.Context) error {
		if v, n := f.count(t, url); v != 0 || n != 0 {
			return fmt.Errorf("queue still has %d visible and %d in-flight messages", v, n)
		}
		return nil
	})
}

// receiveAll receives with a plain client until want messages came or
// within passed, and returns what came (used to look at a DLQ or at what
// is left; the caller checks it).
func (f *fauxqs) receiveAll(t testing.TB, url string, want int, within time.Duration) []types.Message {
	t.Helper()
	var out []types.Message
	// What arrived is returned either way: the caller compares it.
	_ = testenv.Poll(within, func(context.Context) error {
		if len(out) >= want {
			return nil
		}
		// Not the poll's context: a receive cut short could take messages
		// on the server side that the caller would then miss.
		r, err := f.c.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10,
			WaitTimeSeconds: 1, MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Messages...)
		if len(out) < want {
			return fmt.Errorf("%d of %d messages", len(out), want)
		}
		return nil
	})
	return out
}

func mapping(arn string, batch int64) *esm.Mapping {
	return &esm.Mapping{UUID: "11111111-2222-3333-4444-555555555555", Source: esm.SourceSQS,
		Config: esm.Config{EventSourceArn: aws.String(arn), BatchSize: aws.Int64(batch)}}
}

// open starts a poller on a queue with fast test backoffs; the test closes
// it.
func (f *fauxqs) open(t testing.TB, m *esm.Mapping, opts ...Option) *Poller {
	t.Helper()
	opts = append([]Option{WithBackoff(20*time.Millisecond, 500*time.Millisecond)}, opts...)
	p, err := Open(context.Background(), f.cfg, m, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return p
}

// sqsRecord is the part of an encoded record the tests read.
type sqsRecord struct {
	MessageID     string            `json:"messageId"`
	ReceiptHandle string            `json:"receiptHandle"`
	Body          string            `json:"body"`
	Attributes    map[string]string `json:"attributes"`
	MD5OfBody     string            `json:"md5OfBody"`
}

func decode(t testing.TB, r source.Record) sqsRecord {
	t.Helper()
	var s sqsRecord
	if err := json.Unmarshal(r.Data, &s); err != nil {
		t.Fatalf("record %s: %v", r.Data, err)
	}
	return s
}

// pollN polls until n records came or the deadline passed.
func pollN(t testing.TB, p *Poller, n int, within time.Duration) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var out []source.Record
	for len(out) < n {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("poll: got %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}
