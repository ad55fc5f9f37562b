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
	c.CheckpointInterval = defaultKinesisCheckpointInterval
	if v := env.Flags["kinesis-checkpoint-interval"]; len(v) > 0 {
		d, err := time.ParseDuration(v[len(v)-1])
		if err != nil || d < 0 {
			return nil, fmt.Errorf("kinesis: --kinesis-checkpoint-interval %q: want a duration >= 0", v[len(v)-1])
		}
		c.CheckpointInterval = d
	}
	// With sub-lanes, one slow sub-lane holds the shard's checkpoint while
	// the others go on, and a restart redelivers everything past it. Bound
	// what a shard may read past its checkpoint to two batches per
	// sub-lane, so a crash redelivers at most that.
	if pf := m.Config.ParallelizationFactor; pf != nil && *pf > 1 {
		batch := int64(100)
		if m.Config.BatchSize != nil {
			batch = *m.Config.BatchSize
		}
		c.MaxPending = int(min(2*batch**pf, 10000))
	}
	return kinesis.Open(ctx, env.AWS, c)
}

// defaultKinesisCheckpointInterval is --kinesis-checkpoint-interval's
// default: one fsynced store write per shard per interval instead of one
// per batch.
const defaultKinesisCheckpointInterval = 100 * time.Millisecond

// kinesisRunner adds the create-time stream check AWS makes ("Stream not
// found: <arn>") to the pipeline Runner dataPlane builds for Kinesis.
func kinesisRunner(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
	return &kinesis.Runner{Runner: r, AWS: env.AWS}, nil
}
