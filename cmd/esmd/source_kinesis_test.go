package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/testenv"
)

// kinesisStream creates a stream on kinesis-local and returns its name and
// ARN once it is ACTIVE.
func kinesisStream(t *testing.T, c *awskinesis.Client, prefix string, shards int32) (string, string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	if _, err := c.CreateStream(context.Background(), &awskinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	var arn string
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return err
		}
		if d.StreamDescriptionSummary.StreamStatus != kintypes.StreamStatusActive {
			return fmt.Errorf("stream %s", d.StreamDescriptionSummary.StreamStatus)
		}
		arn = aws.ToString(d.StreamDescriptionSummary.StreamARN)
		return nil
	})
	return name, arn
}

// kinesisPut writes records and returns, per shard, the last sequence
// number written.
func kinesisPut(t *testing.T, c *awskinesis.Client, stream string, last map[string]string, bodies ...string) {
	t.Helper()
	for i, b := range bodies {
		out, err := c.PutRecord(context.Background(), &awskinesis.PutRecordInput{StreamName: &stream,
			PartitionKey: aws.String(fmt.Sprintf("k%d", i%5)), Data: []byte(b)})
		if err != nil {
			t.Fatal(err)
		}
		last[aws.ToString(out.ShardId)] = aws.ToString(out.SequenceNumber)
	}
}

// stores are the stores serve opened, by data directory (openedStore).
var (
	storesMu sync.Mutex
	stores   = map[string]*checkpoint.Store{}
)

func init() {
	openedStore = func(s *checkpoint.Store) {
		storesMu.Lock()
		defer storesMu.Unlock()
		stores[filepath.Dir(s.Path())] = s
	}
}

// waitCheckpoints waits until the mapping's checkpoint of every shard in
// want is the given sequence number: every record up to it was delivered.
func waitCheckpoints(t *testing.T, dir, uuid string, want map[string]string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		storesMu.Lock()
		st := stores[dir]
		storesMu.Unlock()
		if st == nil {
			return errors.New("no checkpoint store yet")
		}
		got, err := st.Positions(ctx, uuid)
		if err != nil {
			return err
		}
		for shard, seq := range want {
			if got[shard] != seq {
				return fmt.Errorf("shard %s checkpoint %q, want %q", shard, got[shard], seq)
			}
		}
		return nil
	})
}

// TestServeKinesisEndToEnd runs esmd serve on kinesis-local with testfn on
// RIE: a missing stream is refused with AWS's message; records of two
// shards are all delivered and checkpointed; a record that makes the
// function fail goes, after MaximumRetryAttempts, to the SQS OnFailure
// destination with its KinesisBatchInfo, and the shard moves past it; esmd
// restarted on the same directories resumes at the checkpoints.
func TestServeKinesisEndToEnd(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	ctx := context.Background()

	dir := t.TempDir()
	start := func() (*lambda.Client, func()) {
		c := newCommon("test", io.Discard, "127.0.0.1:0")
		c.dataDir = dir
		c.invokeMode = "rie"
		c.lambdaEndpoint = testenv.RIE(t)
		addr, stop := serveWith(t, c)
		return client(addr), stop
	}
	cl, stop := start()
	defer func() { stop() }()

	missing := "arn:aws:kinesis:us-east-1:000000000000:stream/esmd-no-such-stream"
	_, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(missing), StartingPosition: types.EventSourcePositionTrimHorizon})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" || ae.ErrorMessage() != "Stream not found: "+missing {
		t.Fatalf("create on a missing stream: %v", err)
	}

	name, arn := kinesisStream(t, kc, "e2e", 2)
	last := map[string]string{}
	var bodies []string
	for i := range 20 {
		bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
	}
	kinesisPut(t, kc, name, last, bodies...)
	out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 {
		t.Fatalf("records went to %d shards, want 2", len(last))
	}
	waitCheckpoints(t, dir, *out.UUID, last)

	// A failing record: retried once, then sent to the OnFailure queue.
	qurl, qarn := sqsQueue(t, sc, "kinesis-onfailure", nil)
	fname, farn := kinesisStream(t, kc, "e2e-fail", 1)
	fout, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(farn), StartingPosition: types.EventSourcePositionTrimHorizon,
		MaximumRetryAttempts: aws.Int32(1),
		DestinationConfig:    &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}})
	if err != nil {
		t.Fatal(err)
	}
	flast := map[string]string{}
	kinesisPut(t, kc, fname, flast, `{"testfn":{"mode":"error"}}`)
	failedSeq := flast["shardId-000000000000"]
	var body string
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		m, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &qurl, WaitTimeSeconds: 1})
		if err != nil {
			return err
		}
		if len(m.Messages) == 0 {
			return errors.New("no OnFailure record yet")
		}
		body = aws.ToString(m.Messages[0].Body)
		return nil
	})
	var rec struct {
		RequestContext struct {
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		Info struct {
			ShardID             string `json:"shardId"`
			StartSequenceNumber string `json:"startSequenceNumber"`
			EndSequenceNumber   string `json:"endSequenceNumber"`
			BatchSize           int    `json:"batchSize"`
			StreamArn           string `json:"streamArn"`
		} `json:"KinesisBatchInfo"`
	}
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 ||
		rec.Info.ShardID != "shardId-000000000000" || rec.Info.StartSequenceNumber != failedSeq ||
		rec.Info.EndSequenceNumber != failedSeq || rec.Info.BatchSize != 1 || rec.Info.StreamArn != farn {
		t.Errorf("OnFailure record: %s", body)
	}
	// The record routed to OnFailure is done: the shard moves past it.
	kinesisPut(t, kc, fname, flast, `{"after":"failure"}`)
	waitCheckpoints(t, dir, *fout.UUID, flast)

	// Restart on the same directories: the mapping resumes at its
	// checkpoints and delivers what came meanwhile.
	stop()
	kinesisPut(t, kc, name, last, `{"after":"restart-1"}`, `{"after":"restart-2"}`, `{"after":"restart-3"}`)
	cl, stop = start()
	if _, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoints(t, dir, *out.UUID, last)
}
