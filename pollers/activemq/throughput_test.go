package activemq

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/benchtest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

// BenchmarkThroughput measures messages/s from a queue pre-filled with 1 KB
// messages to a no-op in-process function, through esmd's pipeline with
// this poller and through a plain go-stomp loop in the same run: consume
// (the same prefetch) -> batches of BatchSize -> the same aws:mq event ->
// invoke (up to 5 at once, as esmd's 5 lanes) -> acknowledge. The plain
// loop ACKs each message (client-individual); esmd sends one cumulative
// ACK (client) per settled prefix, about one per batch. Rounds alternate
// which side goes first; the medians are compared:
//
//	go test -run '^$' -bench Throughput -benchtime 1x -v ./pollers/activemq/
//
// ESMD_ACTIVEMQ_BENCH sets the messages per queue (default 20,000),
// ESMD_ACTIVEMQ_BENCH_ROUNDS the rounds (default 4).
func BenchmarkThroughput(bm *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("ESMD_ACTIVEMQ_BENCH"))
	if n <= 0 {
		n = 20000
	}
	rounds, _ := strconv.Atoi(os.Getenv("ESMD_ACTIVEMQ_BENCH_ROUNDS"))
	if rounds <= 0 {
		rounds = 4
	}
	const batch = 100
	b := testenv.ActiveMQ(bm)
	var ours, plain, ratios []float64
	for i := range rounds {
		var o, p float64
		runPlain := func() { p = plainLoop(bm, b, fillQueue(bm, b, n), n, batch) }
		runOurs := func() { o = esmdLoop(bm, b, fillQueue(bm, b, n), n, batch) }
		if i%2 == 0 {
			runPlain()
			runOurs()
		} else {
			runOurs()
			runPlain()
		}
		ours, plain, ratios = append(ours, o), append(plain, p), append(ratios, o/p)
		bm.Logf("round %d: esmd %.0f msg/s, plain go-stomp %.0f msg/s, ratio %.2f", i+1, o, p, o/p)
	}
	bm.Logf("BatchSize %d, %d messages of 1 KB, prefetch %d: esmd %.0f msg/s, plain %.0f msg/s, ratio of medians %.2f, median ratio %.2f",
		batch, n, 5*batch, benchtest.Median(ours), benchtest.Median(plain), benchtest.Median(ours)/benchtest.Median(plain), benchtest.Median(ratios))
	bm.ReportMetric(benchtest.Median(ours), "esmd-msg/s")
	bm.ReportMetric(benchtest.Median(plain), "plain-msg/s")
	bm.ReportMetric(benchtest.Median(ratios), "ratio")
	bm.ReportMetric(0, "ns/op")
}

// fillQueue sends n non-persistent 1 KB bytes messages to a new queue.
func fillQueue(t testing.TB, b *testenv.ActiveMQBroker, n int) string {
	q := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	c, err := stomp.Dial("tcp", b.STOMPAddr, stomp.ConnOpt.Login(testenv.ActiveMQUser, testenv.ActiveMQPassword))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte('a' + rand.IntN(26))
	}
	for i := range n {
		var opts []func(*frame.Frame) error
		if i%1000 == 999 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := c.Send("/queue/"+q, "application/octet-stream", body, opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	return q
}

// noop is the function: it succeeds at once.
type noop struct{ calls atomic.Int64 }

func (f *noop) Invoke(context.Context, string, []byte) (dispatcher.Result, error) {
	f.calls.Add(1)
	return dispatcher.Result{StatusCode: 200, Payload: []byte(`null`)}, nil
}

// counted closes all once n records were acknowledged.
type counted struct {
	*Poller
	n, want int64
	all     chan struct{}
}

func (c *counted) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	err := c.Poller.Ack(ctx, recs, outcome)
	if atomic.AddInt64(&c.n, int64(len(recs))) >= c.want && len(recs) > 0 {
		select {
		case <-c.all:
		default:
			close(c.all)
		}
	}
	return err
}

func esmdLoop(t testing.TB, b *testenv.ActiveMQBroker, q string, n, batch int) float64 {
	m := &esm.Mapping{UUID: "bench", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:f", Source: esm.SourceMQ}
	arn := "arn:aws:mq:us-east-1:000000000000:broker:bench:b-1"
	m.Config.EventSourceArn = &arn
	m.Config.Queues = []string{q}
	bs := int64(batch)
	m.Config.BatchSize = &bs
	all := make(chan struct{})
	r := &pipeline.Runner{Source: Descriptor(), Invoker: &noop{}, Open: func(ctx context.Context, _ *esm.Mapping) (source.Poller, error) {
		cfg := Config{Endpoints: []string{"stomp://" + b.STOMPAddr}, Username: testenv.ActiveMQUser, Password: testenv.ActiveMQPassword,
			Queue: q, BatchSize: batch}
		p, err := Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &counted{Poller: p, want: int64(n), all: all}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.Run(ctx, m, &reporter{}) }()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		t.Fatal("esmd did not finish")
	}
	rate := float64(n) / time.Since(start).Seconds()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return rate
}

// plainLoop consumes with go-stomp (client-individual, prefetch 5 x batch),
// cuts batches of batch, builds the same event, invokes up to 5 batches at
// once and ACKs each message.
func plainLoop(t testing.TB, b *testenv.ActiveMQBroker, q string, n, batch int) float64 {
	start := time.Now()
	c, err := stomp.Dial("tcp", b.STOMPAddr, stomp.ConnOpt.Login(testenv.ActiveMQUser, testenv.ActiveMQPassword))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("/queue/"+q, stomp.AckClientIndividual,
		stomp.SubscribeOpt.Header("activemq.prefetchSize", strconv.Itoa(5*batch)))
	if err != nil {
		t.Fatal(err)
	}
	env := payload.ActiveMQ("arn:aws:mq:us-east-1:000000000000:broker:bench:b-1")
	fn := &noop{}
	batches := make(chan []*stomp.Message, 5)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ms := range batches {
				recs := make([][]byte, len(ms))
				for i, msg := range ms {
					pm := Message(msg.Header, msg.Body, time.Now())
					recs[i] = payload.AppendActiveMQ(nil, &pm)
				}
				ev := env.Append(nil, "", recs)
				if _, err := fn.Invoke(context.Background(), "f", ev); err != nil {
					t.Error(err)
				}
				for _, msg := range ms {
					if err := c.Ack(msg); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	var cur []*stomp.Message
	for got := 0; got < n; got++ {
		msg := <-sub.C
		if msg.Err != nil {
			t.Fatal(msg.Err)
		}
		cur = append(cur, msg)
		if len(cur) == batch || got == n-1 {
			batches <- cur
			cur = nil
		}
	}
	close(batches)
	wg.Wait()
	rate := float64(n) / time.Since(start).Seconds()
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	return rate
}
