package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
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
			errc <- kinesisShard(ctx, s, inv, cl, aws.ToString(sh.ShardId), ck)
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

func kinesisShard(ctx context.Context, s *RawSpec, inv *rawInvoker, cl *kinesis.Client, shard string, ck *checkpoints) error {
	it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &s.Name, ShardId: &shard, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return err
	}
	iter := it.ShardIterator
	env := payload.StreamRecords(s.Arn)
	var ev []byte
	failures := 0
	for iter != nil && ctx.Err() == nil {
		out, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
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
				if !keep(s, r.Data) {
					continue
				}
				if n > 0 {
					ev = append(ev, ',')
				}
				n++
				ev = payload.AppendKinesis(ev, &payload.KinesisRecord{ShardID: shard, PartitionKey: aws.ToString(r.PartitionKey),
					SequenceNumber: aws.ToString(r.SequenceNumber), Data: r.Data, ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
					AWSRegion: s.Region, EventSourceARN: s.Arn})
			}
			ev = append(ev, env.Tail...)
			if n > 0 {
				if err := inv.Invoke(ctx, ev); err != nil {
					return err
				}
			}
			ck.set(shard, aws.ToString(recs[k-1].SequenceNumber))
			recs = recs[k:]
		}
	}
	return ctx.Err()
}

// checkpoints are the shards' positions, written to a file every 100 ms.
type checkpoints struct {
	mu    sync.Mutex
	pos   map[string]string
	dirty bool
}

func (c *checkpoints) set(shard, seq string) {
	c.mu.Lock()
	c.pos[shard], c.dirty = seq, true
	c.mu.Unlock()
}

func (c *checkpoints) run(ctx context.Context, file string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flush(file)
			return
		case <-tick.C:
			c.flush(file)
		}
	}
}

func (c *checkpoints) flush(file string) {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return
	}
	b, _ := json.Marshal(c.pos)
	c.dirty = false
	c.mu.Unlock()
	f, err := os.Create(file)
	if err != nil {
		return
	}
	_, _ = f.Write(b)
	_ = f.Sync()
	_ = f.Close()
}
