package kinesis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/pollers/kinesis"
)

const benchRecords = 5000

// benchStream makes a stream of shards with benchRecords 100-byte records.
func benchStream(b *testing.B, c *awskinesis.Client, shards int32) (string, string) {
	name := fmt.Sprintf("esmd-bench-%d-%d", shards, time.Now().UnixNano())
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &awskinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(shards)}); err != nil {
		b.Fatal(err)
	}
	var arn string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err == nil && d.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			arn = aws.ToString(d.StreamDescriptionSummary.StreamARN)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("stream not active: %v", err)
		}
	}
	data := make([]byte, 100)
	for start := 0; start < benchRecords; start += 500 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < start+500; i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprint(i)), Data: data})
		}
		if _, err := c.PutRecords(ctx, &awskinesis.PutRecordsInput{StreamName: &name, Records: entries}); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { _, _ = c.DeleteStream(context.Background(), &awskinesis.DeleteStreamInput{StreamName: &name}) })
	return name, arn
}

// BenchmarkPoller reads benchRecords records from 1 and 16 shards with the
// poller (checkpointing each Poll's records in a bbolt store) and with a
// plain SDK GetRecords loop; records/s is the figure to compare.
// kinesis-local is the bottleneck here (~10k records/s of 100 B).
func BenchmarkPoller(b *testing.B) {
	c := awskinesis.NewFromConfig(testenvAWS(b))
	for _, shards := range []int32{1, 16} {
		_, arn := benchStream(b, c, shards)
		b.Run(fmt.Sprintf("poller/shards=%d", shards), func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				st, err := checkpoint.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				p, err := kinesis.New(context.Background(), c, kinesis.Config{StreamARN: arn, Mapping: "bench", Positions: st,
					EmptyWait: 10 * time.Millisecond, MaxWait: 50 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				for got := 0; got < benchRecords; {
					recs, err := p.Poll(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Done(context.Background(), recs); err != nil {
						b.Fatal(err)
					}
					got += len(recs)
				}
				p.Close()
				st.Close()
			}
			b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
		})
		b.Run(fmt.Sprintf("sdk-loop/shards=%d", shards), func(b *testing.B) {
			name, _, _ := kinesis.StreamName(arn)
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ls, err := c.ListShards(context.Background(), &awskinesis.ListShardsInput{StreamName: &name})
				if err != nil {
					b.Fatal(err)
				}
				total := make(chan int, len(ls.Shards))
				for _, s := range ls.Shards {
					go func() {
						n := 0
						it, err := c.GetShardIterator(context.Background(), &awskinesis.GetShardIteratorInput{StreamName: &name, ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
						if err != nil {
							total <- 0
							return
						}
						iter := it.ShardIterator
						for {
							out, err := c.GetRecords(context.Background(), &awskinesis.GetRecordsInput{ShardIterator: iter})
							if err != nil {
								break
							}
							n += len(out.Records)
							if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 && len(out.Records) < 10000 {
								break
							}
							iter = out.NextShardIterator
						}
						total <- n
					}()
				}
				got := 0
				for range ls.Shards {
					got += <-total
				}
				if got != benchRecords {
					b.Fatalf("sdk loop read %d records, want %d", got, benchRecords)
				}
			}
			b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}
