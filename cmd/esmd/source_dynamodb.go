package main

import (
	"context"
	"fmt"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
)

func init() {
	sourcePollers[esm.SourceDynamoDB] = openDynamoDB
	sourceRunners[esm.SourceDynamoDB] = dynamoDBRunner
	sourceFlags = append(sourceFlags,
		struct{ name, usage string }{"dynamodb-checkpoint-interval", "coalesce DynamoDB Streams checkpoint writes: the latest position of each shard is written at most once per `duration` (default 100ms); 0 writes each one before the batch is released"},
	)
}

// openDynamoDB starts the poller of a DynamoDB Streams mapping. The
// stream's endpoint comes from the SDK configuration
// (AWS_ENDPOINT_URL_DYNAMODB_STREAMS, AWS_ENDPOINT_URL).
func openDynamoDB(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	if m.Config.EventSourceArn == nil {
		return nil, fmt.Errorf("dynamodbstreams: mapping %s has no EventSourceArn", m.UUID)
	}
	if env.Store == nil {
		return nil, fmt.Errorf("dynamodbstreams: no checkpoint store")
	}
	// Checkpoints live in serve's own store, beside the mapping, so a
	// restart resumes exactly where the last run stopped.
	c := dynamodbstreams.Config{StreamARN: *m.Config.EventSourceArn, Mapping: m.UUID, Positions: env.Store, Log: env.Log}
	if m.Config.StartingPosition != nil {
		c.StartingPosition = *m.Config.StartingPosition
	}
	var err error
	if c.CheckpointInterval, err = checkpointInterval(env, "dynamodb-checkpoint-interval"); err != nil {
		return nil, fmt.Errorf("dynamodbstreams: %w", err)
	}
	if c.MaxPending = maxPending(m); c.MaxPending > 0 {
		c.Limit = min(c.MaxPending, 1000)
	}
	return dynamodbstreams.Open(ctx, env.AWS, c)
}

// dynamoDBRunner adds the create-time stream check AWS makes ("Stream not
// found: <arn>") to the pipeline Runner dataPlane builds for DynamoDB
// Streams.
func dynamoDBRunner(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
	return &dynamodbstreams.Runner{Runner: r, AWS: env.AWS}, nil
}
