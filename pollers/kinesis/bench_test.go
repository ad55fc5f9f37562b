package kinesis_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// The benchmarks run on kinesalite (testenv.Kinesalite), about ten times
// faster than kinesis-local, so that the poller rather than the server is
// measured. Run them with
//
//	go test -run '^$' -bench . -benchtime 3x ./pollers/kinesis/
//
// and compare records/s within one run: the machine is shared.

const benchRecords = 20000

func kinesalite(b *testing.B) *awskinesis.Client {
	return awskinesis.NewFromConfig(testenv.AWSConfig(testenv.Kinesalite(b)))
}

// benchStream makes a stream of shards and waits until it is ACTIVE.
func benchStream(b *testing.B, c *awskinesis.Client, shards int32) (string, string) {
	name := fmt.Sprintf("esmd-bench-%d-%d", shards, time.Now().UnixNano())
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &awskinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(shards)}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = c.DeleteStream(context.Background(), &awskinesis.DeleteStreamInput{StreamName: &name}) })
	var arn string
	testenv.Eventually(b, 60*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return fmt.Errorf("stream not active: %w", err)
		}
		if s := d.StreamDescriptionSummary.StreamStatus; s != types.StreamStatusActive {
			return fmt.Errorf("stream %s", s)
		}
		arn = aws.ToString(d.StreamDescriptionSummary.StreamARN)
		return nil
	})
	return name, arn
}

// fill puts n 100-byte records with n distinct partition keys.
func fill(b *testing.B, c *awskinesis.Client, name string, n int) {
	data := make([]byte, 100)
	for start := 0; start < n; start += 500 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < min(start+500, n); i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprint(i)), Data: data})
		}
		out, err := c.PutRecords(context.Background(), &awskinesis.PutRecordsInput{StreamName: &name, Records: entries})
		if err != nil || aws.ToInt32(out.FailedRecordCount) > 0 {
			b.Fatalf("PutRecords: %v", err)
		}
	}
}

// sdkLoop reads every shard of a stream from TRIM_HORIZON with a plain
// GetRecords loop per shard, until n records were read.
func sdkLoop(b *testing.B, c *awskinesis.Client, name string, n int) {
	ctx := context.Background()
	ls, err := c.ListShards(ctx, &awskinesis.ListShardsInput{StreamName: &name})
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{}, len(ls.Shards))
	for _, s := range ls.Shards {
		go func() {
			defer func() { done <- struct{}{} }()
			it, err := c.GetShardIterator(ctx, &awskinesis.GetShardIteratorInput{StreamName: &name, ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				return
			}
			iter := it.ShardIterator
			for got.Load() < int64(n) {
				out, err := c.GetRecords(ctx, &awskinesis.GetRecordsInput{ShardIterator: iter})
				if err != nil {
					return
				}
				got.Add(int64(len(out.Records)))
				if len(out.Records) == 0 {
					return // this shard is read to its tip
				}
				iter = out.NextShardIterator
			}
		}()
	}
	for range ls.Shards {
		<-done
	}
	if got.Load() != int64(n) {
		b.Fatalf("sdk loop read %d records, want %d", got.Load(), n)
	}
}

// BenchmarkThroughput reads benchRecords 100-byte records through 1 and
// 16 shards: with a plain SDK GetRecords loop (the baseline), and through
// the whole pipeline (poller, batcher, a no-op function, checkpoints in a
// bbolt store) with checkpoints written before each batch is released
// (checkpoint=sync) and coalesced every 100 ms (checkpoint=100ms).
// records/s is the figure to compare within one run.
func BenchmarkThroughput(b *testing.B) {
	c := kinesalite(b)
	for _, shards := range []int32{1, 16} {
		name, arn := benchStream(b, c, shards)
		fill(b, c, name, benchRecords)
		b.Run(fmt.Sprintf("sdk-loop/shards=%d", shards), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				sdkLoop(b, c, name, benchRecords)
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

// runPipeline runs a mapping (BatchSize 100, the Kinesis default) with a
// no-op function until every record was invoked and checkpointed.
func runPipeline(b *testing.B, c *awskinesis.Client, arn, uuid string, interval time.Duration) {
	st, err := checkpoint.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var invoked atomic.Int64
	all := make(chan struct{})
	inv := dispatcher.InvokerFunc(func(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
		// Each record is one "eventID" in the event.
		n := int64(countEventIDs(payload))
		if invoked.Add(n) == benchRecords {
			close(all)
		}
		return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
	})
	m := &esm.Mapping{UUID: uuid, FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:function",
		Source: esm.SourceKinesis, Config: esm.Config{EventSourceArn: &arn, BatchSize: aws.Int64(100),
			ParallelizationFactor: aws.Int64(1), StartingPosition: aws.String("TRIM_HORIZON")}}
	r := &pipeline.Runner{Source: kinesis.Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
		return kinesis.New(ctx, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Mapping: m.UUID, Positions: st,
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

func countEventIDs(payload []byte) int {
	n := 0
	for i := 0; i+10 <= len(payload); i++ {
		if string(payload[i:i+10]) == `"eventID":` {
			n++
		}
	}
	return n
}

// BenchmarkIdleShards opens a poller on an empty 1,000-shard stream and
// reports the memory it holds per idle shard (heap and goroutine stacks,
// after a GC, once every shard was read at least once). Target: under
// 100 KB per idle shard.
func BenchmarkIdleShards(b *testing.B) {
	const shards = 1000
	c := kinesalite(b)
	_, arn := benchStream(b, c, shards)
	for b.Loop() {
		st, err := checkpoint.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		before := inUse()
		gr := runtime.NumGoroutine()
		// Idle shards are read every MaxWait; 5 s keeps kinesalite (one
		// Node process) from being swamped by 1,000 readers.
		p, err := kinesis.New(context.Background(), c, kinesis.Config{Common: stream.Common{StreamARN: arn, Mapping: "idle", Positions: st,
			EmptyWait: time.Second, MaxWait: 5 * time.Second, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}})
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
