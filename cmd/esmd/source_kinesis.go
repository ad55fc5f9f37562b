package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/kinesis"
)

func init() {
	sourcePollers[esm.SourceKinesis] = openKinesis
	sourceRunners[esm.SourceKinesis] = kinesisRunner
	sourceFlags = append(sourceFlags,
		struct{ name, usage string }{"kinesis-invoke-identity-arn", "invokeIdentityArn of Kinesis events (the function's execution role ARN); empty by default"},
		struct{ name, usage string }{"kinesis-checkpoint-interval", "coalesce Kinesis checkpoint writes: the latest position of each shard is written at most once per `duration` (default 100ms); 0 writes each one before the batch is released (a crash then redelivers only the batches in flight)"},
	)
}

// openKinesis starts the poller of a Kinesis mapping. The stream's
// endpoint comes from the SDK configuration (AWS_ENDPOINT_URL_KINESIS,
// AWS_ENDPOINT_URL).
func openKinesis(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	if m.Config.EventSourceArn == nil {
		return nil, fmt.Errorf("kinesis: mapping %s has no EventSourceArn", m.UUID)
	}
	if env.Store == nil {
		return nil, fmt.Errorf("kinesis: no checkpoint store")
	}
	// Checkpoints live in serve's own store, beside the mapping, so a
	// restart resumes exactly where the last run stopped.
	c := kinesis.Config{StreamARN: *m.Config.EventSourceArn, Mapping: m.UUID, Positions: env.Store, Log: env.Log}
	if m.Config.StartingPosition != nil {
		c.StartingPosition = *m.Config.StartingPosition
	}
	if ts := m.Config.StartingPositionTimestamp; ts != nil {
		sec, frac := math.Modf(*ts)
		c.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	if v := env.Flags["kinesis-invoke-identity-arn"]; len(v) > 0 {
		c.InvokeIdentityArn = v[len(v)-1]
	}
	var err error
	if c.CheckpointInterval, err = checkpointInterval(env, "kinesis-checkpoint-interval"); err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	c.MaxPending = maxPending(m)
	return kinesis.Open(ctx, env.AWS, c)
}

// kinesisRunner adds the create-time stream check AWS makes ("Stream not
// found: <arn>") to the pipeline Runner dataPlane builds for Kinesis.
func kinesisRunner(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
	return &kinesis.Runner{Runner: r, AWS: env.AWS}, nil
}
