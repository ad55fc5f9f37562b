package dynamodbstreams_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/ddbstreams"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// The benchmarks run on the in-repo DynamoDB Streams server, in the
// benchmark's own process (it shares the CPU with what is measured, as
// the baseline does). Run them with
//
//	go test -run '^$' -bench . -benchtime 3x ./pollers/dynamodbstreams/
//
// and compare records/s within one run: the machine is shared.

const benchRecords = 20000

type reporter struct{}

func (reporter) ProcessingResult(string) {}
func (reporter) Disable(string)          {}

// benchStream makes a stream of shards holding benchRecords INSERTs of
// about 100 bytes, one item each.
func benchStream(b *testing.B, s *ddbstreams.Server, shards int) string {
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: fmt.Sprintf("bench-%d", shards), Shards: shards,
		ViewType: types.StreamViewTypeNewImage})
	if err != nil {
		b.Fatal(err)
	}
	pad := strings.Repeat("x", 80)
	for i := range benchRecords {
		id := &types.AttributeValueMemberS{Value: fmt.Sprint(i)}
		if _, err := s.Put(arn, ddbstreams.Change{EventName: types.OperationTypeInsert,
			Keys:     map[string]types.AttributeValue{"id": id},
			NewImage: map[string]types.AttributeValue{"id": id, "pad": &types.AttributeValueMemberS{Value: pad}}}); err != nil {
			b.Fatal(err)
		}
	}
	return arn
}

// sdkLoop reads every shard from TRIM_HORIZON with a plain GetRecords loop
// per shard, until n records were read.
func sdkLoop(b *testing.B, c *ddbs.Client, arn string, n int) {
	ctx := context.Background()
	var shards []types.Shard
	in := &ddbs.DescribeStreamInput{StreamArn: &arn}
	for {
		d, err := c.DescribeStream(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		shards = append(shards, d.StreamDescription.Shards...)
		if d.StreamDescription.LastEvaluatedShardId == nil {
			break
		}
		in.ExclusiveStartShardId = d.StreamDescription.LastEvaluatedShardId
	}
	var got atomic.Int64
	done := make(chan struct{}, len(shards))
	for _, s := range shards {
		go func() {
			defer func() { done <- struct{}{} }()
			it, err := c.GetShardIterator(ctx, &ddbs.GetShardIteratorInput{StreamArn: &arn, ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				return
			}
			iter := it.ShardIterator
			for got.Load() < int64(n) {
				out, err := c.GetRecords(ctx, &ddbs.GetRecordsInput{ShardIterator: iter})
				if err != nil {
					b.Errorf("GetRecords: %v", err)
					return
				}
				if len(out.Records) == 0 {
					return // this shard is read to its tip
				}
				got.Add(int64(len(out.Records)))
				iter = out.NextShardIterator
			}
		}()
	}
	for range shards {
		<-done
	}
	if got.Load() != int64(n) {
		b.Fatalf("sdk loop read %d records, want %d", got.Load(), n)
	}
}

// BenchmarkThroughput reads benchRecords records through 1 and 16 shards:
// with a plain SDK GetRecords loop (the baseline), and through the whole
// pipeline (poller, batcher, a no-op function, checkpoints in a bbolt
// store) with checkpoints written before each batch is released
// (checkpoint=sync) and coalesced every 100 ms (checkpoint=100ms).
// records/s is the figure to compare within one run.
func BenchmarkThroughput(b *testing.B) {
	s, c := server(b)
	for _, shards := range []int{1, 16} {
		arn := benchStream(b, s, shards)
		b.Run(fmt.Sprintf("sdk-loop/shards=%d", shards), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				sdkLoop(b, c, arn, benchRecords)
			}
			b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
		})
		for _, iv := range []time.Duration{0, 100 * time.Millisecond} {
			label := "sync"
			if iv > 0 {
				label = iv.String()
			}
			b.Run(fmt.Sprintf("pipeline/shards=%d/checkpoint=%s", shards, label), func(b *testing.B) {
				start := time.Now()
				for i := 0; b.Loop(); i++ {
					runPipeline(b, c, arn, fmt.Sprintf("bench-%d-%s-%d", shards, label, i), iv)
				}
				b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}

// runPipeline runs a mapping (BatchSize 100, the DynamoDB default) with a
// no-op function until every record was invoked.
func runPipeline(b *testing.B, c *ddbs.Client, arn, uuid string, interval time.Duration) {
	st, err := checkpoint.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var invoked atomic.Int64
	all := make(chan struct{})
	inv := dispatcher.InvokerFunc(func(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
		if invoked.Add(int64(strings.Count(string(payload), `"eventID":`))) == benchRecords {
			close(all)
		}
		return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
	})
	m := &esm.Mapping{UUID: uuid, FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:function",
		Source: esm.SourceDynamoDB, Config: esm.Config{EventSourceArn: &arn, BatchSize: aws.Int64(100),
			ParallelizationFactor: aws.Int64(1), StartingPosition: aws.String("TRIM_HORIZON")}}
	r := &pipeline.Runner{Source: dynamodbstreams.Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
		return dynamodbstreams.New(ctx, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Mapping: m.UUID, Positions: st,
			EmptyWait: 10 * time.Millisecond, MaxWait: 50 * time.Millisecond, CheckpointInterval: interval}})
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, reporter{}) }()
	select {
	case <-all:
	case err := <-done:
		cancel()
		b.Fatalf("pipeline ended: %v", err)
	case <-time.After(5 * time.Minute):
		cancel()
		<-done
		b.Fatalf("%d of %d records invoked", invoked.Load(), benchRecords)
	}
	cancel()
	<-done
}

// BenchmarkIdleShards opens a poller on an empty 1,000-shard stream and
// reports the memory it holds per idle shard (heap and goroutine stacks,
// after a GC, once every shard was read at least once). Target: under
// 100 KB per idle shard.
func BenchmarkIdleShards(b *testing.B) {
	const shards = 1000
	s, c := server(b)
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "idle", Shards: shards})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		st, err := checkpoint.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		before := inUse()
		gr := runtime.NumGoroutine()
		p, err := dynamodbstreams.New(context.Background(), c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Mapping: "idle", Positions: st,
			EmptyWait: time.Second, MaxWait: 5 * time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		testenv.Eventually(b, 2*time.Minute, func(context.Context) error {
			if n := len(p.Lag()); n < shards {
				return fmt.Errorf("%d of %d shards read", n, shards)
			}
			return nil
		})
		after := inUse()
		b.ReportMetric(float64(after-before)/shards/1024, "KB/shard")
		b.ReportMetric(float64(runtime.NumGoroutine()-gr)/shards, "goroutines/shard")
		p.Close()
		st.Close()
	}
}

// inUse is the heap in use plus goroutine stacks, after a GC.
func inUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
