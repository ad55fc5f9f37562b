package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPipelineAgainstRealRuntimeAndDestination runs Kinesis-shaped records
// through the whole data plane: a real Lambda runtime (aws-lambda-go under
// the Runtime Interface Emulator, through the AWS SDK's Invoke) and a real
// SQS OnFailure destination (fauxqs).
func TestPipelineAgainstRealRuntimeAndDestination(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	rie := testenv.RIE(t)
	sqsURL := testenv.FauxQS(t)
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(rie), dispatcher.WithMode(dispatcher.ModeRIE))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	sqsc := sqs.NewFromConfig(testenv.AWSConfig(sqsURL))
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("pipeline-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	dlqArn := "arn:aws:sqs:us-east-1:000000000000:pipeline-dlq"

	log := memsource.NewLog(1)
	for i := range 6 {
		data := fmt.Sprintf(`{"n":%d}`, i)
		if i == 4 {
			data = `{"testfn":{"mode":"error","errorMessage":"record 4 is bad"}}`
		}
		log.ProduceData("pk", func(lane, seq string, at time.Time) []byte {
			return payload.AppendKinesis(nil, &payload.KinesisRecord{ShardID: "shardId-000000000000", PartitionKey: "pk",
				SequenceNumber: seq, Data: []byte(data), ApproximateArrivalTimestamp: at, AWSRegion: "us-east-1",
				EventSourceARN: streamArn, InvokeIdentityArn: "arn:aws:iam::000000000000:role/r"})
		})
	}
	m := mapping(func(c *esm.Config) {
		c.BatchSize = ptr(int64(3))
		c.MaximumRetryAttempts = ptr(int64(1))
		c.DestinationConfig = &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr(dlqArn)}}
	})
	r := &Runner{
		Source:     descriptorFor(esm.SourceKinesis),
		Open:       func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(100), nil },
		Invoker:    inv,
		RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond,
		Destination: func(dest string, m *esm.Mapping) (destination.Sender, error) {
			return destination.New(dest, m.UUID, destination.Clients{SQS: sqsc})
		},
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	rep := &fakeReporter{}
	go func() { done <- r.Run(rctx, m, rep) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.EventuallyTrue(t, 10*time.Second, "checkpoint past the failed batch", func() bool { return log.Checkpoint("lane-0") == 5 })

	out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 2, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("%d OnFailure messages, want 1", len(out.Messages))
	}
	var rec struct {
		RequestContext struct {
			FunctionArn            string `json:"functionArn"`
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		ResponseContext struct {
			StatusCode      int    `json:"statusCode"`
			ExecutedVersion string `json:"executedVersion"`
			FunctionError   string `json:"functionError"`
		} `json:"responseContext"`
		Version string `json:"version"`
		Info    struct {
			ShardID             string `json:"shardId"`
			StartSequenceNumber string `json:"startSequenceNumber"`
			EndSequenceNumber   string `json:"endSequenceNumber"`
			BatchSize           int    `json:"batchSize"`
			StreamArn           string `json:"streamArn"`
		} `json:"KinesisBatchInfo"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 ||
		rec.RequestContext.FunctionArn != m.FunctionArn || rec.ResponseContext.StatusCode != 200 ||
		rec.ResponseContext.FunctionError != "Unhandled" || rec.ResponseContext.ExecutedVersion != "$LATEST" || rec.Version != "1.0" ||
		rec.Info.StartSequenceNumber != "3" || rec.Info.EndSequenceNumber != "5" || rec.Info.BatchSize != 3 ||
		rec.Info.ShardID != "lane-0" || rec.Info.StreamArn != streamArn {
		t.Errorf("OnFailure record: %s", aws.ToString(out.Messages[0].Body))
	}
}
