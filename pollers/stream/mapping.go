package stream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// What Kinesis and DynamoDB Streams share in their descriptors.

// DefaultCheckpointInterval is the default of --kinesis-checkpoint-interval
// and --dynamodb-checkpoint-interval: one store write per interval (every
// shard's latest position in one transaction) instead of one per batch.
const DefaultCheckpointInterval = 100 * time.Millisecond

// CheckpointInterval reads a stream source's --<flag> (the last one given),
// or returns DefaultCheckpointInterval.
func CheckpointInterval(env *source.Env, flag string) (time.Duration, error) {
	v := env.Flag(flag)
	if v == "" {
		return DefaultCheckpointInterval, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--%s %q: want a duration >= 0", flag, v)
	}
	return d, nil
}

// CommonFor translates what a mapping says that every stream source reads
// the same way into the Common configuration: EventSourceArn, UUID (the
// key of the checkpoints), StartingPosition, the --<flag> checkpoint
// interval and MaxPending; checkpoints live in env.Store, beside the
// mapping, so a restart resumes exactly where the last run stopped, and
// when env.Store leases lanes (PostgreSQL, several workers) the shards are
// shared out through it. The
// source prefixes its errors with its name.
func CommonFor(env *source.Env, m *esm.Mapping, flag string) (Common, error) {
	if m.Config.EventSourceArn == nil {
		return Common{}, fmt.Errorf("mapping %s has no EventSourceArn", m.UUID)
	}
	if env.Store == nil {
		return Common{}, errors.New("no checkpoint store")
	}
	c := Common{StreamARN: *m.Config.EventSourceArn, Mapping: m.UUID, Positions: env.Store, Log: env.Log}
	// A store several workers share leases the shards out (PostgreSQL);
	// the embedded store is one process's, which reads every shard.
	if l, ok := env.Store.(Leases); ok && env.Worker != "" {
		c.Leases, c.Worker, c.LeaseTTL = l, env.Worker, env.LeaseTTL
	}
	if m.Config.StartingPosition != nil {
		c.StartingPosition = *m.Config.StartingPosition
	}
	var err error
	if c.CheckpointInterval, err = CheckpointInterval(env, flag); err != nil {
		return Common{}, err
	}
	c.MaxPending = MaxPending(m)
	c.MinPending = MinPending(m)
	c.BatchSize = 100
	if b := m.Config.BatchSize; b != nil {
		c.BatchSize = int(*b)
	}
	return c, nil
}

// MinPending is what a shard of a mapping may read past its checkpoint
// whatever the bytes (Common.MinPending): two batches per sub-lane, one in
// flight and one ready, at most 10,000 records.
func MinPending(m *esm.Mapping) int {
	batch, pf := int64(100), int64(1)
	if m.Config.BatchSize != nil {
		batch = *m.Config.BatchSize
	}
	if p := m.Config.ParallelizationFactor; p != nil && *p > 1 {
		pf = *p
	}
	return int(min(2*batch*pf, 10000))
}

// MaxPending bounds what a shard may read past its checkpoint when the
// mapping has sub-lanes (0: the poller's default). One slow sub-lane holds
// the shard's checkpoint while the others go on, and a restart redelivers
// everything past it: two batches per sub-lane keeps that to what a crash
// would redeliver anyway.
func MaxPending(m *esm.Mapping) int {
	pf := m.Config.ParallelizationFactor
	if pf == nil || *pf <= 1 {
		return 0
	}
	batch := int64(100)
	if m.Config.BatchSize != nil {
		batch = *m.Config.BatchSize
	}
	return int(min(2*batch**pf, 10000))
}

// Envelope is the event envelope of a stream mapping: Records, with the
// tumbling-window fields and the stream's ARN in them.
func Envelope(m *esm.Mapping) payload.Envelope {
	return payload.StreamRecords(aws.ToString(m.Config.EventSourceArn))
}

// FailureInfo returns the OnFailure batch-info builder of a stream source:
// the discarded range of one shard under member (KinesisBatchInfo,
// DDBStreamBatchInfo), with arrival times in seconds when seconds is set.
func FailureInfo(member string, seconds bool) func(m *esm.Mapping, lane string, recs []source.Record, _ int) destination.BatchInfo {
	return func(m *esm.Mapping, lane string, recs []source.Record, _ int) destination.BatchInfo {
		first, last := recs[0], recs[len(recs)-1]
		arn := aws.ToString(m.Config.EventSourceArn)
		return &BatchInfo{Member: member, Seconds: seconds, ShardID: lane,
			StartSequenceNumber: first.Seq, EndSequenceNumber: last.Seq,
			ApproximateArrivalOfFirstRecord: first.Arrival, ApproximateArrivalOfLastRecord: last.Arrival,
			BatchSize: len(recs), StreamARN: arn}
	}
}

// StreamNotFoundMessage is the message of the InvalidParameterValueException
// AWS answers CreateEventSourceMapping with when the stream does not exist
// (test_esm_with_not_existing_kinesis_stream,
// test_esm_with_not_existing_dynamodb_stream): "Stream not found: " and the
// EventSourceArn.
const StreamNotFoundMessage = "Stream not found: "

// Check is the create-time check of a stream source: describe looks the
// stream up, and a stream that does not exist (notFound) refuses the
// mapping with AWS's 400 and message. Other failures do not refuse it: the
// poller retries them.
func Check(ctx context.Context, env *source.Env, cfg *esm.Config, describe func(ctx context.Context, arn string) error, notFound func(error) bool) error {
	if cfg.EventSourceArn == nil {
		return nil
	}
	arn := *cfg.EventSourceArn
	err := describe(ctx, arn)
	if notFound(err) {
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: StreamNotFoundMessage + arn}
	}
	if err != nil && env.Log != nil {
		env.Log.Warn("could not check that the stream exists; the mapping is accepted", "stream", arn, "err", err)
	}
	return nil
}
