package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/awsconfig"
)

// kinesisTarget is a Kinesis stream per round, on the Kinesis the SDK's
// environment names (AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, else AWS).
type kinesisTarget struct {
	cl        *kinesis.Client
	shards    int
	name, arn string
	key       atomic.Uint64
}

func newKinesis(ctx context.Context, cfg *Config) (*kinesisTarget, error) {
	c, err := awsconfig.Load(ctx, region(), false)
	if err != nil {
		return nil, err
	}
	return &kinesisTarget{cl: kinesis.NewFromConfig(c), shards: cfg.Partitions}, nil
}

func (t *kinesisTarget) Prepare(ctx context.Context, round string) error {
	t.name = "esmd-bench-" + round
	if _, err := t.cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &t.name, ShardCount: aws.Int32(int32(t.shards))}); err != nil {
		return fmt.Errorf("create stream: %w", err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		out, err := t.cl.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &t.name})
		if err != nil {
			return fmt.Errorf("describe stream: %w", err)
		}
		if d := out.StreamDescriptionSummary; d.StreamStatus == ktypes.StreamStatusActive {
			t.arn = aws.ToString(d.StreamARN)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s not ACTIVE after a minute", t.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Produce puts the bodies with PutRecords, 500 a call, 4 calls at a time,
// each record with its own partition key so they spread over the shards;
// records the stream refuses are put again.
func (t *kinesisTarget) Produce(ctx context.Context, bodies [][]byte) error {
	return inParallel(ctx, len(bodies), 500, 4, func(ctx context.Context, from, to int) error {
		var entries []ktypes.PutRecordsRequestEntry
		for i := from; i < to; i++ {
			entries = append(entries, ktypes.PutRecordsRequestEntry{Data: bodies[i], PartitionKey: aws.String(strconv.FormatUint(t.key.Add(1), 36))})
		}
		for attempt := 0; len(entries) > 0; attempt++ {
			out, err := t.cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: &t.name, Records: entries})
			if err != nil {
				return err
			}
			if aws.ToInt32(out.FailedRecordCount) == 0 {
				return nil
			}
			if attempt == 20 {
				return fmt.Errorf("PutRecords: %d records still refused after 20 attempts", aws.ToInt32(out.FailedRecordCount))
			}
			var again []ktypes.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != nil {
					again = append(again, entries[i])
				}
			}
			entries = again
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
}

func (t *kinesisTarget) Mapping() *esm.Config {
	return &esm.Config{EventSourceArn: ptr(t.arn), StartingPosition: ptr("TRIM_HORIZON")}
}

func (t *kinesisTarget) Raw() RawSpec { return RawSpec{Name: t.name, Arn: t.arn, Partitions: t.shards} }

func (t *kinesisTarget) Filter() string { return `{"data":{"kind":["match"]}}` }

func (t *kinesisTarget) Close() {}
