package destination

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/sqsurl"
)

// Sender delivers one invocation record to a destination. A non-nil error
// means the destination did not accept it: the caller retries, and the
// records stay undone until a Send succeeds.
type Sender interface {
	Send(ctx context.Context, r *Record) error
}

// Clients are the service clients New may use; only those needed by the
// destination must be set.
type Clients struct {
	SQS *sqs.Client
	SNS *sns.Client
	// S3 must use path-style addressing against emulators
	// (s3.Options.UsePathStyle).
	S3    *s3.Client
	Kafka *kgo.Client
}

// NewClients returns SQS, SNS and S3 clients from one SDK configuration
// (endpoints from AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL as the SDK
// resolves them). pathStyleS3 selects path-style bucket addressing, which
// emulators such as fauxqs need. Kafka is left nil: set it for kafka://
// destinations.
func NewClients(cfg aws.Config, pathStyleS3 bool) Clients {
	return Clients{
		SQS: sqs.NewFromConfig(cfg),
		SNS: sns.NewFromConfig(cfg),
		S3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyleS3 }),
	}
}

// ErrUnsupported is returned by New for a destination it cannot send to.
var ErrUnsupported = errors.New("unsupported OnFailure destination")

// New returns the sender for an OnFailure Destination: an SQS queue ARN,
// an SNS topic ARN, an S3 bucket ARN (arn:aws:s3:::bucket) or
// kafka://topic. esmUUID is the mapping's UUID (the S3 key prefix).
func New(dest, esmUUID string, c Clients) (Sender, error) {
	if topic, ok := strings.CutPrefix(dest, "kafka://"); ok {
		if c.Kafka == nil {
			return nil, fmt.Errorf("destination %s: no Kafka client", dest)
		}
		if topic == "" {
			return nil, fmt.Errorf("%w: %q", ErrUnsupported, dest)
		}
		return NewKafkaSender(c.Kafka, topic), nil
	}
	arn, ok := esm.ParseARN(dest)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnsupported, dest)
	}
	switch arn.Service {
	case "sqs":
		if c.SQS == nil {
			return nil, fmt.Errorf("destination %s: no SQS client", dest)
		}
		return NewSQSSender(c.SQS, dest), nil
	case "sns":
		if c.SNS == nil {
			return nil, fmt.Errorf("destination %s: no SNS client", dest)
		}
		return NewSNSSender(c.SNS, dest), nil
	case "s3":
		if c.S3 == nil {
			return nil, fmt.Errorf("destination %s: no S3 client", dest)
		}
		return NewS3Sender(c.S3, dest, esmUUID), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupported, dest)
}

// SQSSender sends records as SQS messages (metadata only).
type SQSSender struct {
	client   *sqs.Client
	queueARN string

	mu  sync.Mutex
	url string
}

// NewSQSSender returns a sender to the queue queueARN
// (arn:aws:sqs:region:account:name). The queue URL is looked up on the
// first Send.
func NewSQSSender(c *sqs.Client, queueARN string) *SQSSender {
	return &SQSSender{client: c, queueARN: queueARN}
}

func (s *SQSSender) queueURL(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url != "" {
		return s.url, nil
	}
	url, err := sqsurl.Lookup(ctx, s.client, s.queueARN)
	if err != nil {
		return "", fmt.Errorf("sqs destination: %w", err)
	}
	s.url = url
	return s.url, nil
}

// Send implements Sender.
func (s *SQSSender) Send(ctx context.Context, r *Record) error {
	url, err := s.queueURL(ctx)
	if err != nil {
		return err
	}
	_, err = s.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(string(r.JSON(PayloadNone)))})
	if err != nil {
		return fmt.Errorf("sqs destination %s: %w", s.queueARN, err)
	}
	return nil
}

// SNSSender publishes records to an SNS topic (metadata only).
type SNSSender struct {
	client   *sns.Client
	topicARN string
}

// NewSNSSender returns a sender to the topic topicARN.
func NewSNSSender(c *sns.Client, topicARN string) *SNSSender {
	return &SNSSender{client: c, topicARN: topicARN}
}

// Send implements Sender.
func (s *SNSSender) Send(ctx context.Context, r *Record) error {
	_, err := s.client.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(s.topicARN), Message: aws.String(string(r.JSON(PayloadNone)))})
	if err != nil {
		return fmt.Errorf("sns destination %s: %w", s.topicARN, err)
	}
	return nil
}

// S3Sender writes each record, with the invocation event as "payload", to
// an object of the bucket.
type S3Sender struct {
	client  *s3.Client
	bucket  string
	esmUUID string
	// NewID returns the random suffix of object keys (uuid.NewString by
	// default; tests replace it).
	NewID func() string
}

// NewS3Sender returns a sender to the bucket of bucketARN
// (arn:aws:s3:::bucket).
func NewS3Sender(c *s3.Client, bucketARN, esmUUID string) *S3Sender {
	bucket := bucketARN
	if i := strings.LastIndexByte(bucketARN, ':'); i >= 0 {
		bucket = bucketARN[i+1:]
	}
	return &S3Sender{client: c, bucket: bucket, esmUUID: esmUUID, NewID: uuid.NewString}
}

// Key returns the object key AWS uses for r:
// aws/lambda/<ESM-UUID>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random>,
// from the record's timestamp in UTC. For Kafka the shard component is the
// "<topic>-<partition>" of the first partition (or Record.Lane).
func (s *S3Sender) Key(r *Record, random string) string {
	t := r.Timestamp.UTC()
	return "aws/lambda/" + s.esmUUID + "/" + r.lane() + "/" + t.Format("2006/01/02") + "/" + t.Format("2006-01-02T15.04.05") + "-" + random
}

// Send implements Sender.
func (s *S3Sender) Send(ctx context.Context, r *Record) error {
	key := s.Key(r, s.NewID())
	body := r.JSON(PayloadString)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key),
		Body: strings.NewReader(string(body)), ContentLength: aws.Int64(int64(len(body))),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("s3 destination %s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// KafkaSender produces records to a Kafka topic (kafka://topic): one
// message per record with metadata and the record's event as "payload",
// keyed by the original record key.
type KafkaSender struct {
	client *kgo.Client
	topic  string
}

// NewKafkaSender returns a sender to topic through client.
func NewKafkaSender(c *kgo.Client, topic string) *KafkaSender {
	return &KafkaSender{client: c, topic: topic}
}

// Send implements Sender; it returns when the broker acknowledged the
// message.
func (s *KafkaSender) Send(ctx context.Context, r *Record) error {
	rec := &kgo.Record{Topic: s.topic, Key: r.Key, Value: r.JSON(PayloadObject)}
	if err := s.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("kafka destination %s: %w", s.topic, err)
	}
	return nil
}
