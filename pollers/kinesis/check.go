package kinesis

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// StreamNotFoundMessage is the message AWS refuses a mapping of a stream
// that does not exist with, followed by the EventSourceArn.
const StreamNotFoundMessage = stream.StreamNotFoundMessage

// Descriptor describes Kinesis to the pipeline: Records events, ordered
// shards, BatchSize 100 with no window by default, KinesisBatchInfo, and
// the create-time "Stream not found" check.
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:      esm.SourceKinesis,
		Delivery:    source.Ordered,
		Envelope:    stream.Envelope,
		Filter:      filter.SourceKinesis,
		Batching:    source.Batching{BatchSize: 100},
		FailureInfo: stream.FailureInfo(stream.KinesisBatchInfo, false),
		Check:       check,
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			c, err := ConfigFor(env, m)
			if err != nil {
				return nil, err
			}
			return Open(ctx, env.AWS, c)
		},
		Rewind: Rewind,
		Flags: []source.Flag{
			{Name: "kinesis-invoke-identity-arn", Usage: "invokeIdentityArn of Kinesis events (the function's execution role ARN); empty by default"},
			{Name: "kinesis-checkpoint-interval", Usage: "coalesce Kinesis checkpoint writes: the latest position of each shard is written at most once per `duration` (default 100ms); 0 writes each one before the batch is released (a crash then redelivers only the batches in flight)"},
		},
	}
}

// ConfigFor translates a mapping into the poller's configuration. The
// stream's endpoint comes from the SDK configuration
// (AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL); checkpoints live in the
// embedded store, beside the mapping, so a restart resumes exactly where the
// last run stopped.
func ConfigFor(env *source.Env, m *esm.Mapping) (Config, error) {
	common, err := stream.CommonFor(env, m, "kinesis-checkpoint-interval")
	if err != nil {
		return Config{}, fmt.Errorf("kinesis: %w", err)
	}
	c := Config{Common: common, InvokeIdentityArn: env.Flag("kinesis-invoke-identity-arn")}
	if ts := m.Config.StartingPositionTimestamp; ts != nil {
		sec, frac := math.Modf(*ts)
		c.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	return c, nil
}

// check refuses a mapping of a stream that does not exist, with AWS's 400
// and message.
func check(ctx context.Context, env *source.Env, cfg *esm.Config) error {
	return stream.Check(ctx, env, cfg, func(ctx context.Context, arn string) error {
		name, region, err := StreamName(arn)
		if err != nil {
			return nil // the engine validated the ARN's shape already
		}
		c := env.AWS.Copy()
		if region != "" {
			c.Region = region
		}
		_, err = awskinesis.NewFromConfig(c).DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		return err
	}, isNotFound)
}
