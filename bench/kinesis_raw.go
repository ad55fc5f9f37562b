package bench

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/payload"
)

// kinesisIdle is how long a raw shard reader waits after an empty
// GetRecords: Kinesis allows five reads a second per shard.
const kinesisIdle = 200 * time.Millisecond

// rawKinesis is the plain SDK loop: one goroutine per shard reads from
// TRIM_HORIZON with GetRecords (up to 10,000 records, as Lambda reads),
// invokes what it read in events of up to BatchSize records, and
// checkpoints after each; a checkpointer
// writes the shards' checkpoints to a file (fsync) every 100 ms, as esmd's
// default checkpoint interval does.
func rawKinesis(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	cfg, err := awsconfig.Load(ctx, s.Region, false)
	if err != nil {
		return err
	}
	cl := kinesis.NewFromConfig(cfg)
	var shards []ktypes.Shard
	for in := (&kinesis.ListShardsInput{StreamName: &s.Name}); ; {
		out, err := cl.ListShards(ctx, in)
		if err != nil {
			return err
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	ids := make([]string, len(shards))
	for i, sh := range shards {
		ids[i] = aws.ToString(sh.ShardId)
	}
	return eachShard(ctx, ids, func(ctx context.Context, shard string, ck *checkpoints) error {
		return kinesisShard(ctx, s, inv, cl, shard, ck)
	})
}

func kinesisShard(ctx context.Context, s *RawSpec, inv *rawInvoker, cl *kinesis.Client, shard string, ck *checkpoints) error {
	it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &s.Name, ShardId: &shard, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return err
	}
	return readShard(ctx, s, inv, ck, shard, it.ShardIterator, shardReader[ktypes.Record]{
		get: func(ctx context.Context, iter *string) ([]ktypes.Record, *string, error) {
			out, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				return nil, nil, err
			}
			return out.Records, out.NextShardIterator, nil
		},
		encode: func(dst []byte, r *ktypes.Record) ([]byte, bool) {
			if !keep(s, r.Data) {
				return dst, false
			}
			return payload.AppendKinesis(dst, &payload.KinesisRecord{ShardID: shard, PartitionKey: aws.ToString(r.PartitionKey),
				SequenceNumber: aws.ToString(r.SequenceNumber), Data: r.Data, ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
				AWSRegion: s.Region, EventSourceARN: s.Arn}), true
		},
		seq: func(r *ktypes.Record) string { return aws.ToString(r.SequenceNumber) },
	})
}
