package rabbitmq_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/benchtest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

// BenchmarkThroughput measures messages/s from a queue pre-filled with 1 KB
// messages to a no-op Invoke endpoint, through esmd's pipeline with this
// poller and through a plain amqp091 consume -> invoke -> ack loop with the
// same batching (full batches of BatchSize; esmd with the default 500 ms
// window, which a backlog never waits for), the same
// concurrency (one batch in flight: AWS runs one RabbitMQ invocation at a
// time, spec MQ-3), the same event shape and the same invoker
// (SigV4-signed direct HTTP). The plain loop acks each batch with one
// multiple=true ack, as esmd's poller does (cumulative acks), and has the
// prefetch esmd's consumers reach together on a backlog (MaxConsumers x
// BatchSize, ESMD_RABBITMQ_BENCH_PREFETCH overrides it), so it fetches
// the next batches while one is being invoked. One run of it does every
// round, whatever b.N:
//
//	go test -run '^$' -bench Throughput -benchtime 1x -v -timeout 40m ./pollers/rabbitmq/
//
// ESMD_RABBITMQ_BENCH sets the messages per queue (default 200,000, the
// issue's figure), ESMD_RABBITMQ_BENCH_BATCH BatchSize (default 100) and
// ESMD_RABBITMQ_BENCH_ROUNDS the rounds (default 4). The side that goes
// first alternates, so with an even number of rounds each side goes first
// as often as second (with the former default of 3, esmd went second in
// two rounds of three); and each side starts once the machine is quiet
// after its queue was filled. The medians are compared. Each round logs,
// per side and per message, the test process's CPU time and heap
// allocations and the broker's CPU time: on a 2-core machine the broker
// and the test process share the CPUs, so what one side costs the broker
// shows in its rate. ESMD_RABBITMQ_BENCH_CONSUMERS and
// ESMD_RABBITMQ_BENCH_ESMD_PREFETCH set esmd's MaxConsumers and Prefetch
// (defaults 4 and BatchSize), ESMD_RABBITMQ_BENCH_PREFETCH the plain loop's
// prefetch (default their product), ESMD_RABBITMQ_BENCH_CPUPROFILE a file
// prefix for CPU profiles of esmd's runs.
func BenchmarkThroughput(bm *testing.B) {
	var t testing.TB = bm
	n, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH"))
	if n <= 0 {
		n = 200000
	}
	b := testenv.RabbitMQ(t)
	batch := 100
	if v, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_BATCH")); v > 0 {
		batch = v
	}
	rounds, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_ROUNDS"))
	if rounds <= 0 {
		rounds = 4
	}

	var invokes atomic.Int64
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		invokes.Add(1)
		_, _ = io.WriteString(w, "null")
	}))
	defer fn.Close()
	direct, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(fn.URL), dispatcher.WithDirectHTTP(true))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	inv := &timedInvoker{Invoker: direct}

	// esmd's poller as configured by default: up to 4 consumers, each
	// with a prefetch of BatchSize (ESMD_RABBITMQ_BENCH_CONSUMERS and
	// ESMD_RABBITMQ_BENCH_ESMD_PREFETCH change them). The plain loop gets
	// the prefetch esmd's consumers reach together on a backlog from its
	// first message on, where esmd's consumers scale up (Open starts as
	// many as the backlog fills): the comparison favours the plain loop.
	consumers, esmdPrefetch := maxConsumers, batch
	if v, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_CONSUMERS")); v > 0 {
		consumers = v
	}
	if v, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_ESMD_PREFETCH")); v > 0 {
		esmdPrefetch = v
	}
	prefetch := consumers * esmdPrefetch
	if v, _ := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_PREFETCH")); v > 0 {
		prefetch = v
	}
	t.Logf("esmd: up to %d consumers with a prefetch of %d; plain loop: one consumer with a prefetch of %d", consumers, esmdPrefetch, prefetch)
	var plain, ours, ratios, plainCPU, oursCPU, plainGap, oursGap []float64
	for i := range rounds {
		// Each side consumes a queue filled just before it; the side that
		// goes first alternates, so neither always meets a broker that has
		// just worked through the other's messages.
		var p, o run
		// Each side runs under a pprof label (side=esmd or side=plain),
		// which the goroutines it starts inherit: go test -cpuprofile and
		// pprof -tagfocus compare where each side spends its CPU.
		runPlain := func() {
			q := fill(t, b, n)
			t.Logf("plain: waited %v for a quiet machine", quiet(30*time.Second).Round(time.Millisecond))
			pprof.Do(context.Background(), pprof.Labels("side", "plain"), func(context.Context) {
				p = plainLoop(t, b, q, inv, n, batch, prefetch)
			})
		}
		runOurs := func() {
			q := fill(t, b, n)
			t.Logf("esmd: waited %v for a quiet machine", quiet(30*time.Second).Round(time.Millisecond))
			pprof.Do(context.Background(), pprof.Labels("side", "esmd"), func(context.Context) {
				o = esmdRun(t, b, q, inv, n, batch, consumers, esmdPrefetch)
			})
		}
		if i%2 == 0 {
			runPlain()
			runOurs()
		} else {
			runOurs()
			runPlain()
		}
		plain, ours, ratios = append(plain, p.rate), append(ours, o.rate), append(ratios, o.rate/p.rate)
		plainCPU, oursCPU = append(plainCPU, p.cpu.Seconds()*1e6), append(oursCPU, o.cpu.Seconds()*1e6)
		plainGap, oursGap = append(plainGap, p.gap.Seconds()*1e6), append(oursGap, o.gap.Seconds()*1e6)
		t.Logf("round %d: esmd %.0f msg/s (%v CPU/msg, broker %v CPU/msg, %.1f allocs and %.0f B/msg, %v per batch outside Invoke), plain %.0f msg/s (%v CPU/msg, broker %v CPU/msg, %.1f allocs and %.0f B/msg, %v per batch outside Invoke), ratio %.2f",
			i+1, o.rate, o.cpu.Round(100*time.Nanosecond), o.broker.Round(100*time.Nanosecond), o.allocs, o.bytes, o.gap.Round(time.Microsecond),
			p.rate, p.cpu.Round(100*time.Nanosecond), p.broker.Round(100*time.Nanosecond), p.allocs, p.bytes, p.gap.Round(time.Microsecond), o.rate/p.rate)
	}
	t.Logf("BatchSize %d, %d messages of 1 KB, plain prefetch %d: esmd %.0f msg/s %v, plain amqp091 loop %.0f msg/s %v, ratio of medians %.2f, ratios per round %v, median ratio %.2f; test process CPU per message: esmd %.1f us %v, plain %.1f us %v; per batch outside Invoke: esmd %.0f us %v, plain %.0f us %v (%d invocations)",
		batch, n, prefetch, benchtest.Median(ours), benchtest.Format(ours, 0), benchtest.Median(plain), benchtest.Format(plain, 0), benchtest.Median(ours)/benchtest.Median(plain), benchtest.Format(ratios, 2), benchtest.Median(ratios),
		benchtest.Median(oursCPU), benchtest.Format(oursCPU, 0), benchtest.Median(plainCPU), benchtest.Format(plainCPU, 0),
		benchtest.Median(oursGap), benchtest.Format(oursGap, 0), benchtest.Median(plainGap), benchtest.Format(plainGap, 0), invokes.Load())
	bm.ReportMetric(benchtest.Median(ours), "esmd-msg/s")
	bm.ReportMetric(benchtest.Median(plain), "plain-msg/s")
	bm.ReportMetric(benchtest.Median(ratios), "ratio")
	bm.ReportMetric(0, "ns/op") // one op is every round: meaningless
}

// maxConsumers is the poller's default Config.MaxConsumers.
const maxConsumers = 4

// fill declares a queue and publishes n transient 1 KB messages to it,
// with publisher confirms in windows.
func fill(t testing.TB, b *testenv.RabbitMQBroker, n int) string {
	t.Helper()
	q := queue(t, b, "/", nil)
	ch := channel(t, b, "/")
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte('a' + rand.IntN(26))
	}
	start := time.Now()
	ctx := context.Background()
	const window = 2000
	var pending []*amqp.DeferredConfirmation
	for i := range n {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, c)
		if len(pending) == window || i == n-1 {
			for _, c := range pending {
				if ok, err := c.WaitContext(ctx); !ok || err != nil {
					t.Fatalf("publish not confirmed: %v", err)
				}
			}
			pending = pending[:0]
		}
	}
	t.Logf("published %d messages in %v", n, time.Since(start).Round(time.Millisecond))
	return q
}

// esmdRun runs the pipeline until n messages were finished.
func esmdRun(t testing.TB, b *testenv.RabbitMQBroker, q string, inv *timedInvoker, n, batch, consumers, prefetch int) run {
	m := &esm.Mapping{UUID: "bench", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:function", Source: esm.SourceMQ}
	arn := "arn:aws:mq:us-east-1:000000000000:broker:bench:b-1"
	m.Config.EventSourceArn = &arn
	m.Config.Queues = []string{q}
	bs := int64(batch)
	m.Config.BatchSize = &bs
	// AWS's default 500 ms window, as esmd serve runs it: on a pre-filled
	// queue every batch but the last is full before the window ends, as
	// in the plain loop. (MaximumBatchingWindowInSeconds 0 would invoke
	// whatever has arrived, often a fraction of a batch.)
	if w, err := strconv.Atoi(os.Getenv("ESMD_RABBITMQ_BENCH_WINDOW")); err == nil {
		window := int64(w)
		m.Config.MaximumBatchingWindowInSeconds = &window
	}
	var finished atomic.Int64
	all := make(chan struct{})
	opened := make(chan *rabbitmq.Poller, 1)
	r := &pipeline.Runner{Source: rabbitmq.Descriptor(), Invoker: inv, Open: func(ctx context.Context, _ *esm.Mapping) (source.Poller, error) {
		cfg := config(b, "/", q)
		cfg.BatchSize, cfg.MaxConsumers, cfg.Prefetch = batch, consumers, prefetch
		p, err := rabbitmq.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		opened <- p
		return &counting{Poller: p, n: &finished, want: int64(n), all: all}, nil
	}}
	if f := os.Getenv("ESMD_RABBITMQ_BENCH_CPUPROFILE"); f != "" {
		// esmd's side only, appended to one file per run.
		out, err := os.Create(fmt.Sprintf("%s.%d", f, time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	mk := begin(inv)
	go func() { done <- r.Run(ctx, m, &reporter{}) }()
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		t.Fatalf("esmd finished %d of %d messages", finished.Load(), n)
	}
	res := mk.end(n, inv)
	t.Logf("esmd: %d consumers at the end", (<-opened).Consumers())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return res
}

// run is one side's figures: messages/s and the test process's CPU time
// per message (the function endpoint and the invoker included, the same
// for both sides), which the load of other processes inflates less than
// wall time.
//
// gap is the wall time per invocation spent outside Invoke: what the side
// does between one batch's invocation and the next's on the critical path
// (waiting for deliveries, building the event, acking, handing over
// between goroutines).
//
// allocs and bytes are the test process's heap allocations per message
// (the function endpoint and the invoker included, as for cpu).
type run struct {
	rate          float64
	cpu, broker   time.Duration
	gap           time.Duration
	allocs, bytes float64
}

// mark is where a run starts.
type mark struct {
	start        time.Time
	cpu, broker  time.Duration
	busy, invoke int64
	mem          runtime.MemStats
}

func begin(inv *timedInvoker) mark {
	m := mark{start: time.Now(), cpu: benchtest.CPUTime(), broker: brokerCPU(), busy: inv.busy.Load(), invoke: inv.calls.Load()}
	runtime.ReadMemStats(&m.mem)
	return m
}

func (m mark) end(n int, inv *timedInvoker) run {
	elapsed := time.Since(m.start)
	r := run{rate: float64(n) / elapsed.Seconds(), cpu: (benchtest.CPUTime() - m.cpu) / time.Duration(n), broker: (brokerCPU() - m.broker) / time.Duration(n)}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.allocs = float64(ms.Mallocs-m.mem.Mallocs) / float64(n)
	r.bytes = float64(ms.TotalAlloc-m.mem.TotalAlloc) / float64(n)
	if calls := inv.calls.Load() - m.invoke; calls > 0 {
		r.gap = (elapsed - time.Duration(inv.busy.Load()-m.busy)) / time.Duration(calls)
	}
	return r
}

// timedInvoker adds up the time spent in Invoke.
type timedInvoker struct {
	dispatcher.Invoker
	busy, calls atomic.Int64
}

// ReleasesPayload passes on the direct invoker's promise, so that esmd's
// pipeline reuses event memory as it does under esmd serve.
func (ti *timedInvoker) ReleasesPayload() bool {
	rp, ok := ti.Invoker.(interface{ ReleasesPayload() bool })
	return ok && rp.ReleasesPayload()
}

func (ti *timedInvoker) Invoke(ctx context.Context, fn string, payload []byte) (dispatcher.Result, error) {
	start := time.Now()
	res, err := ti.Invoker.Invoke(ctx, fn, payload)
	ti.busy.Add(int64(time.Since(start)))
	ti.calls.Add(1)
	return res, err
}

// plainLoop consumes with amqp091, invokes batches of what has arrived (up
// to batch) one at a time, and acks each batch after the invocation.
func plainLoop(t testing.TB, b *testenv.RabbitMQBroker, q string, inv *timedInvoker, n, batch, prefetch int) run {
	ch := channel(t, b, "/")
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q, "plain", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env := payload.RabbitMQ("arn:aws:mq:us-east-1:000000000000:broker:bench:b-1")
	group := payload.RabbitMQGroup(q, "/")
	bld := payload.NewBuilder(env)
	var buf []amqp.Delivery
	mk := begin(inv)
	for done := 0; done < n; {
		// The queue is pre-filled: every batch but the last is full.
		for len(buf) < min(batch, n-done) {
			buf = append(buf, <-deliveries)
		}
		bld.Reset(env)
		for i := range buf {
			d := &buf[i]
			msg := payload.RabbitMQMessage{Redelivered: d.Redelivered, Data: d.Body,
				Properties: payload.RabbitMQProperties{ContentType: d.ContentType, Timestamp: d.Timestamp}}
			if d.DeliveryMode != 0 {
				dm := d.DeliveryMode
				msg.Properties.DeliveryMode = &dm
			}
			bld.Add(group, payload.AppendRabbitMQ(nil, &msg))
		}
		for {
			res, err := inv.Invoke(ctx, "arn:aws:lambda:us-east-1:000000000000:function:function", bld.Bytes())
			if err == nil && !res.Failed() {
				break
			}
		}
		if err := ch.Ack(buf[len(buf)-1].DeliveryTag, true); err != nil {
			t.Fatal(err)
		}
		done += len(buf)
		buf = buf[:0]
	}
	res := mk.end(n, inv)
	if err := ch.Cancel("plain", false); err != nil {
		t.Fatal(err)
	}
	return res
}

// counting counts the records the pipeline finished.
type counting struct {
	*rabbitmq.Poller
	n    *atomic.Int64
	want int64
	all  chan struct{}
	once sync.Once
}

func (c *counting) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	err := c.Poller.Ack(ctx, recs, outcome)
	done, _ := source.Split(recs, outcome)
	if c.n.Add(int64(len(done))) >= c.want {
		c.once.Do(func() { close(c.all) })
	}
	return err
}
