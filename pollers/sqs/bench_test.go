package sqs

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkThroughput drains pre-filled queues of 1 KB messages with a
// plain SDK loop (ReceiveMessage then DeleteMessageBatch, benchConcurrency
// receivers) and through the poller and the pipeline to a no-op function
// (the same number of receivers; BatchSize 10, and 100 with a 1 s window),
// all on the same fauxqs. The three runs alternate for
// ESMD_SQS_BENCH_ROUNDS rounds (default 3) so that the load of the machine
// weighs on each alike; it reports the median messages per second of each
// and esmd's ratio to the plain loop.
//
//	ESMD_SQS_BENCH_MESSAGES=100000 go test -run '^$' -bench Throughput -benchtime 1x ./pollers/sqs
func BenchmarkThroughput(b *testing.B) {
	f := newFauxqs(b)
	n := benchMessages()
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("ESMD_SQS_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	inv := noopFunction(b)
	rates := map[string][]float64{}
	cpu := map[string]time.Duration{}
	for b.Loop() {
		for range rounds {
			url, _ := f.queue(b, false, nil)
			fill(b, f, url, n)
			start, c0 := time.Now(), cpuTime()
			plainLoop(b, f, url, n)
			rates["plain"] = append(rates["plain"], float64(n)/time.Since(start).Seconds())
			cpu["plain"] += cpuTime() - c0
			for _, batch := range []int64{10, 100} {
				k := fmt.Sprintf("esmd%d", batch)
				r, c := esmdRun(b, f, inv, n, batch)
				rates[k] = append(rates[k], r)
				cpu[k] += c
			}
		}
	}
	median := func(v []float64) float64 {
		v = append([]float64(nil), v...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	plain := median(rates["plain"])
	b.ReportMetric(plain, "plain-msgs/s")
	for _, k := range []string{"esmd10", "esmd100"} {
		m := median(rates[k])
		b.ReportMetric(m, k+"-msgs/s")
		b.ReportMetric(m/plain, k+"-ratio")
	}
	b.Logf("rates per round: %v", rates)
	for k, c := range cpu {
		// CPU time of this process (esmd, the no-op function endpoint and
		// the SDK clients; fauxqs runs in its own) per message.
		b.ReportMetric(float64(c.Microseconds())/float64(n*rounds), k+"-cpu-us/msg")
	}
}

// cpuTime returns the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// esmdRun fills a queue with n messages and drains it through a mapping
// with the given BatchSize; it returns messages per second and the CPU
// time of the drain.
func esmdRun(b *testing.B, f *fauxqs, inv dispatcher.Invoker, n int, batch int64) (float64, time.Duration) {
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
	start, c0 := time.Now(), cpuTime()
	go func() { done <- r.Run(ctx, m, &reporter{}) }()
	f.waitEmpty(b, url, 10*time.Minute)
	el, c := time.Since(start), cpuTime()-c0
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return float64(n) / el.Seconds(), c
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
