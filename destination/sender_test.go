package destination_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fauxClients(t *testing.T) destination.Clients {
	t.Helper()
	return destination.NewClients(testenv.AWSConfig(testenv.FauxQS(t)), true)
}

func sampleRecord() *destination.Record {
	return &destination.Record{RequestID: uuid.NewString(), FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 2,
		Response:  &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"},
		Timestamp: time.Date(2026, 11, 25, 1, 2, 3, 456e6, time.UTC), Info: kinesisInfo(1),
		Payload: []byte(`{"Records":[{"kinesis":{"data":"aGVsbG8="}}]}`)}
}

func createQueue(t *testing.T, ctx context.Context, c *sqs.Client) (url, arn string) {
	t.Helper()
	name := "esmd-dest-" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return *out.QueueUrl, attrs.Attributes["QueueArn"]
}

func receiveOne(t *testing.T, ctx context.Context, c *sqs.Client, url string) string {
	t.Helper()
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	return *out.Messages[0].Body
}

// compareWithRecording checks a delivered body against the recorded AWS
// record (key order and values).
func compareWithRecording(t *testing.T, body []byte) {
	t.Helper()
	rec := recording(t, "test_lambda_integration_kinesis.snapshot.json",
		"test_kinesis_event_source_mapping_with_on_failure_destination_config", "sqs_payload", "Messages", "0", "Body")
	if err := match(parseOrdered(t, body), rec, true, "$"); err != nil {
		t.Errorf("%v\n%s", err, body)
	}
}

func TestSQSSender(t *testing.T) {
	ctx := context.Background()
	c := fauxClients(t)
	url, arn := createQueue(t, ctx, c.SQS)
	s, err := destination.New(arn, "esm-uuid", c)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	r.ApproximateInvokeCount = 2
	if err := s.Send(ctx, r); err != nil {
		t.Fatal(err)
	}
	body := receiveOne(t, ctx, c.SQS, url)
	if body != string(r.JSON(destination.PayloadNone)) {
		t.Errorf("body %s\nwant %s", body, r.JSON(destination.PayloadNone))
	}
	compareWithRecording(t, []byte(body))
}

func TestSNSSender(t *testing.T) {
	ctx := context.Background()
	c := fauxClients(t)
	topic, err := c.SNS.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("esmd-dest-" + uuid.NewString()[:8])})
	if err != nil {
		t.Fatal(err)
	}
	url, qarn := createQueue(t, ctx, c.SQS)
	if _, err := c.SNS.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(qarn)}); err != nil {
		t.Fatal(err)
	}
	s, err := destination.New(*topic.TopicArn, "esm-uuid", c)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	if err := s.Send(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The queue gets the standard SNS notification; its Message is the record.
	var note struct {
		Type, TopicArn, Message string
	}
	if err := json.Unmarshal([]byte(receiveOne(t, ctx, c.SQS, url)), &note); err != nil {
		t.Fatal(err)
	}
	if note.Type != "Notification" || note.TopicArn != *topic.TopicArn || note.Message != string(r.JSON(destination.PayloadNone)) {
		t.Errorf("notification %+v", note)
	}
	compareWithRecording(t, []byte(note.Message))
}

func TestS3Sender(t *testing.T) {
	ctx := context.Background()
	c := fauxClients(t)
	bucket := "esmd-dest-" + uuid.NewString()[:8]
	if _, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	s, err := destination.New("arn:aws:s3:::"+bucket, "11111111-2222-3333-4444-555555555555", c)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	if err := s.Send(ctx, r); err != nil {
		t.Fatal(err)
	}
	list, err := c.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 1 {
		t.Fatalf("%d objects", len(list.Contents))
	}
	key := *list.Contents[0].Key
	// The layout the LocalStack parity test asserts against AWS.
	want := regexp.MustCompile(`^aws/lambda/11111111-2222-3333-4444-555555555555/shardId-000000000000/2026/11/25/2026-11-25T01\.02\.03-[0-9a-f-]{36}$`)
	if !want.MatchString(key) {
		t.Errorf("key %s", key)
	}
	obj, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	body, _ := io.ReadAll(obj.Body)
	if string(body) != string(r.JSON(destination.PayloadString)) {
		t.Errorf("object %s", body)
	}
}

func TestSenderFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := fauxClients(t)
	// A queue that does not exist: the send fails and says so.
	s, err := destination.New("arn:aws:sqs:us-east-1:000000000000:esmd-no-such-queue", "u", c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, sampleRecord()); err == nil || !strings.Contains(err.Error(), "esmd-no-such-queue") {
		t.Errorf("err = %v", err)
	}
	bucket, err := destination.New("arn:aws:s3:::esmd-no-such-bucket", "u", c)
	if err != nil {
		t.Fatal(err)
	}
	if err := bucket.Send(ctx, sampleRecord()); err == nil {
		t.Error("send to a missing bucket succeeded")
	}
	for _, dest := range []string{"arn:aws:lambda:us-east-1:1:function:f", "kafka://", "nope"} {
		if _, err := destination.New(dest, "u", destination.Clients{Kafka: &kgo.Client{}}); !errors.Is(err, destination.ErrUnsupported) {
			t.Errorf("New(%q) = %v", dest, err)
		}
	}
}

func TestKafkaSender(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seeds := testenv.Kafka(t)
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	topic := "esmd-dlq-" + uuid.NewString()[:8]
	s, err := destination.New("kafka://"+topic, "u", destination.Clients{Kafka: prod})
	if err != nil {
		t.Fatal(err)
	}
	r := &destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 3,
		Response: &destination.ResponseContext{StatusCode: 200, FunctionError: "Unhandled"}, Timestamp: at,
		Info:    &kafka.BatchInfo{BatchSize: 1, BootstrapServers: strings.Join(seeds, ","), PayloadSize: 10, RecordInfo: &kafka.RecordInfo{Offset: 7, Timestamp: at}},
		Payload: []byte(`{"eventSource":"SelfManagedKafka","bootstrapServers":"x","records":{}}`), Key: []byte("k1")}
	if err := s.Send(ctx, r); err != nil {
		t.Fatal(err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fetches := cons.PollFetches(ctx)
	if errs := fetches.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	recs := fetches.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if string(recs[0].Key) != "k1" || string(recs[0].Value) != string(r.JSON(destination.PayloadObject)) {
		t.Errorf("key %q value %s", recs[0].Key, recs[0].Value)
	}
}

// A destination that cannot be reached returns an error (the caller
// retries; the records are not done).
func TestSenderUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := testenv.AWSConfig("http://127.0.0.1:1") // nothing listens on port 1
	c := destination.Clients{SQS: sqs.NewFromConfig(cfg), SNS: sns.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })}
	for _, dest := range []string{"arn:aws:sqs:us-east-1:000000000000:q", "arn:aws:sns:us-east-1:000000000000:t", "arn:aws:s3:::b"} {
		s, err := destination.New(dest, "u", c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(ctx, sampleRecord()); err == nil {
			t.Errorf("%s: send to an unreachable endpoint succeeded", dest)
		}
	}
}
