package bench

import (
	"bytes"
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/payload"
	ddb "github.com/esmd/esmd/pollers/dynamodbstreams"
)

// rawDynamoDB is the plain SDK loop over a DynamoDB stream: one goroutine
// per shard reads from TRIM_HORIZON with GetRecords (up to 1,000 records),
// invokes what it read in events of up to BatchSize records, checkpointing
// after each, written to a file every 100 ms as for Kinesis. The
// attribute maps are encoded with esmd's encoder, so the event bytes are
// the same.
func rawDynamoDB(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	cfg, err := awsconfig.Load(ctx, s.Region, false)
	if err != nil {
		return err
	}
	cl := dynamodbstreams.NewFromConfig(cfg)
	var shards []types.Shard
	for in := (&dynamodbstreams.DescribeStreamInput{StreamArn: &s.Name}); ; {
		out, err := cl.DescribeStream(ctx, in)
		if err != nil {
			return err
		}
		shards = append(shards, out.StreamDescription.Shards...)
		if out.StreamDescription.LastEvaluatedShardId == nil {
			break
		}
		in.ExclusiveStartShardId = out.StreamDescription.LastEvaluatedShardId
	}
	ids := make([]string, len(shards))
	for i, sh := range shards {
		ids[i] = aws.ToString(sh.ShardId)
	}
	return eachShard(ctx, ids, func(ctx context.Context, shard string, ck *checkpoints) error {
		return dynamoShard(ctx, s, inv, cl, shard, ck)
	})
}

func dynamoShard(ctx context.Context, s *RawSpec, inv *rawInvoker, cl *dynamodbstreams.Client, shard string, ck *checkpoints) error {
	it, err := cl.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: &s.Name, ShardId: &shard, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return err
	}
	var keys, img []byte
	return readShard(ctx, s, inv, ck, shard, it.ShardIterator, shardReader[types.Record]{
		get: func(ctx context.Context, iter *string) ([]types.Record, *string, error) {
			out, err := cl.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
			if err != nil {
				return nil, nil, err
			}
			return out.Records, out.NextShardIterator, nil
		},
		encode: func(dst []byte, r *types.Record) ([]byte, bool) {
			d := r.Dynamodb
			keys = ddb.AppendAttributeMap(keys[:0], d.Keys)
			img = ddb.AppendAttributeMap(img[:0], d.NewImage)
			if s.Filter && !bytes.Contains(img, []byte(`"kind":{"S":"match"}`)) {
				return dst, false
			}
			return payload.AppendDynamoDB(dst, &payload.DynamoDBRecord{EventID: aws.ToString(r.EventID), EventName: string(r.EventName),
				AWSRegion: s.Region, ApproximateCreationDateTime: aws.ToTime(d.ApproximateCreationDateTime).Truncate(time.Second),
				Keys: keys, NewImage: img, SequenceNumber: aws.ToString(d.SequenceNumber), SizeBytes: aws.ToInt64(d.SizeBytes),
				StreamViewType: string(d.StreamViewType), EventSourceARN: s.Arn}), true
		},
		seq: func(r *types.Record) string { return aws.ToString(r.Dynamodb.SequenceNumber) },
	})
}
