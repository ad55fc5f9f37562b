package sqs

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
)

// benchMessages is how many 1 KB messages each benchmark drains
// (ESMD_SQS_BENCH_MESSAGES, default 20,000; the figure is 100,000).
func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("ESMD_SQS_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// benchConcurrency is the number of receivers of both esmd and the plain
// loop.
const benchConcurrency = 8

// fill sends n 1 KB messages with 8 senders.
func fill(b *testing.B, f *fauxqs, url string, n int) {
	body := strings.Repeat("x", 1024)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(10)) - 10
				if i >= n {
					return
				}
				var entries []types.SendMessageBatchRequestEntry
				for j := i; j < min(i+10, n); j++ {
					entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j - i)), MessageBody: &body})
				}
				if _, err := f.c.SendMessageBatch(context.Background(), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// noopFunction is a Lambda Invoke endpoint on 127.0.0.1 that answers every
// invocation with null at once.
func noopFunction(b *testing.B) dispatcher.Invoker {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = r.Body.Read(make([]byte, 0))
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		_, _ = w.Write([]byte("null"))
	}))
	b.Cleanup(srv.Close)
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inv.Close() })
	return inv
}

// BenchmarkThroughput drains a pre-filled queue of 1 KB messages through
// the poller and the pipeline to a no-op function (BatchSize 10, and 100
// with a 1 s window), and with a plain SDK loop (ReceiveMessage then
// DeleteMessageBatch, the same number of receivers) on the same fauxqs, and
// reports messages per second.
//
//	ESMD_SQS_BENCH_MESSAGES=100000 go test -run '^$' -bench Throughput -benchtime 1x ./pollers/sqs
func BenchmarkThroughput(b *testing.B) {
	f := newFauxqs(b)
	n := benchMessages()
	b.Run("plain-loop", func(b *testing.B) {
		for b.Loop() {
			url, _ := f.queue(b, false, nil)
			fill(b, f, url, n)
			start := time.Now()
			plainLoop(b, f, url, n)
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		}
	})
	for _, batch := range []int64{10, 100} {
		b.Run(fmt.Sprintf("esmd-batch%d", batch), func(b *testing.B) {
			inv := noopFunction(b)
			for b.Loop() {
				url, arn := f.queue(b, false, nil)
				fill(b, f, url, n)
				m := mapping(arn, batch)
				m.FunctionArn = functionArn
				if batch > 10 {
					m.Config.MaximumBatchingWindowInSeconds = aws.Int64(1)
				}
				r := &pipeline.Runner{Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (pipeline.Poller, error) {
					p, err := Open(ctx, f.cfg, m, WithReceivers(benchConcurrency, benchConcurrency, benchConcurrency))
					if err != nil {
						return nil, err
					}
					return p, nil
				}}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := time.Now()
				go func() { done <- r.Run(ctx, m, &reporter{}) }()
				f.waitEmpty(b, url, 10*time.Minute)
				el := time.Since(start)
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
			}
		})
	}
}

// plainLoop is the reference: benchConcurrency goroutines receiving and
// deleting until n messages are deleted.
func plainLoop(b *testing.B, f *fauxqs, url string, n int) {
	var deleted atomic.Int64
	var wg sync.WaitGroup
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deleted.Load() < int64(n) {
				out, err := f.c.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: &url,
					MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
					MessageAttributeNames:       []string{"All"}})
				if err != nil {
					b.Error(err)
					return
				}
				if len(out.Messages) == 0 {
					continue
				}
				var entries []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := f.c.DeleteMessageBatch(context.Background(), &awssqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
					b.Error(err)
					return
				}
				deleted.Add(int64(len(entries)))
			}
		}()
	}
	wg.Wait()
}
