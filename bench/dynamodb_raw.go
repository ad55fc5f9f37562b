package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
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
	ck := &checkpoints{pos: map[string]string{}}
	dir, err := os.MkdirTemp("", "esmd-bench-raw-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ck.run(ctx, filepath.Join(dir, "checkpoints.json"))
	}()
	errc := make(chan error, len(shards))
	for _, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- dynamoShard(ctx, s, inv, cl, aws.ToString(sh.ShardId), ck)
		}()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func dynamoShard(ctx context.Context, s *RawSpec, inv *rawInvoker, cl *dynamodbstreams.Client, shard string, ck *checkpoints) error {
	it, err := cl.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: &s.Name, ShardId: &shard, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return err
	}
	iter := it.ShardIterator
	env := payload.StreamRecords(s.Arn)
	var ev, keys, img []byte
	failures := 0
	for iter != nil && ctx.Err() == nil {
		out, err := cl.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
		if err != nil {
			// Throttling and a busy server pass: try again a few times.
			if failures++; failures > 5 || ctx.Err() != nil {
				return err
			}
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
		iter = out.NextShardIterator
		if len(out.Records) == 0 {
			select {
			case <-time.After(kinesisIdle):
			case <-ctx.Done():
			}
			continue
		}
		for recs := out.Records; len(recs) > 0; {
			k := min(s.BatchSize, len(recs))
			ev = append(ev[:0], env.Head...)
			n := 0
			for i := range recs[:k] {
				r := &recs[i]
				d := r.Dynamodb
				keys = ddb.AppendAttributeMap(keys[:0], d.Keys)
				img = ddb.AppendAttributeMap(img[:0], d.NewImage)
				if s.Filter && !bytes.Contains(img, []byte(`"kind":{"S":"match"}`)) {
					continue
				}
				if n > 0 {
					ev = append(ev, ',')
				}
				n++
				ev = payload.AppendDynamoDB(ev, &payload.DynamoDBRecord{EventID: aws.ToString(r.EventID), EventName: string(r.EventName),
					AWSRegion: s.Region, ApproximateCreationDateTime: aws.ToTime(d.ApproximateCreationDateTime).Truncate(time.Second),
					Keys: keys, NewImage: img, SequenceNumber: aws.ToString(d.SequenceNumber), SizeBytes: aws.ToInt64(d.SizeBytes),
					StreamViewType: string(d.StreamViewType), EventSourceARN: s.Arn})
			}
			ev = append(ev, env.Tail...)
			if n > 0 {
				if err := inv.Invoke(ctx, ev); err != nil {
					return err
				}
			}
			ck.set(shard, aws.ToString(recs[k-1].Dynamodb.SequenceNumber))
			recs = recs[k:]
		}
	}
	return ctx.Err()
}
