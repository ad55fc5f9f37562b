package dynamodbstreams

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// StreamNotFoundMessage is the message AWS refuses a mapping of a stream
// that does not exist with, followed by the EventSourceArn.
const StreamNotFoundMessage = stream.StreamNotFoundMessage

// Descriptor describes DynamoDB Streams to the pipeline: Records events,
// ordered shards, BatchSize 100 with no window by default,
// DDBStreamBatchInfo, and the create-time "Stream not found" check.
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:      esm.SourceDynamoDB,
		Delivery:    source.Ordered,
		Envelope:    stream.Envelope,
		Filter:      filter.SourceDynamoDB,
		Batching:    source.Batching{BatchSize: 100},
		FailureInfo: stream.FailureInfo(stream.DDBStreamBatchInfo, true),
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
			{Name: "dynamodb-checkpoint-interval", Usage: "coalesce DynamoDB Streams checkpoint writes: the latest position of each shard is written at most once per `duration` (default 100ms); 0 writes each one before the batch is released"},
		},
	}
}

// ConfigFor translates a mapping into the poller's configuration. The
// stream's endpoint comes from the SDK configuration
// (AWS_ENDPOINT_URL_DYNAMODB_STREAMS, AWS_ENDPOINT_URL); checkpoints live
// in the embedded store, beside the mapping.
func ConfigFor(env *source.Env, m *esm.Mapping) (Config, error) {
	common, err := stream.CommonFor(env, m, "dynamodb-checkpoint-interval")
	if err != nil {
		return Config{}, fmt.Errorf("dynamodbstreams: %w", err)
	}
	c := Config{Common: common}
	if c.MaxPending > 0 {
		c.Limit = min(c.MaxPending, 1000)
	}
	return c, nil
}

// check refuses a mapping of a stream that does not exist, with AWS's 400
// and message.
func check(ctx context.Context, env *source.Env, cfg *esm.Config) error {
	return stream.Check(ctx, env, cfg, func(ctx context.Context, arn string) error {
		if _, _, err := ParseARN(arn); err != nil {
			return nil // the engine validated the ARN's shape already
		}
		_, err := NewClient(env.AWS, arn).DescribeStream(ctx, &ddbs.DescribeStreamInput{StreamArn: aws.String(arn), Limit: aws.Int32(1)})
		return err
	}, IsStreamNotFound)
}
