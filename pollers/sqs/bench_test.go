package sqs

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/benchtest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
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
// invocation with null at once; calls counts the connections esmd opens to
// it ("invoke-dial").
func noopFunction(b *testing.B, calls *callCounter) dispatcher.Invoker {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = r.Body.Read(make([]byte, 0))
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		_, _ = w.Write([]byte("null"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			calls.add("invoke-dial")
		}
	}
	srv.Start()
	b.Cleanup(srv.Close)
	// The direct Invoke path, as esmd serve uses by default (--invoke-path
	// direct), signed as for AWS (ModeAWS: SHA-256 of the event).
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(srv.URL), dispatcher.WithDirectHTTP(true))
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
// all on the same fauxqs. The runs alternate for ESMD_SQS_BENCH_ROUNDS
// rounds (default 3), each round starting with the next one, after a
// warm-up, so that the load of the machine weighs on each alike;
// it reports the median messages per second of each and esmd's ratio to the
// plain loop, with what each run cost: SQS calls per 1,000 messages (by
// operation, and receives that came back with fewer than 10 messages), the
// CPU time of this process and of fauxqs per message. fauxqs is CPU-bound,
// and esmd, the no-op function endpoint and the SDK clients run in this
// process on the same cores: on a machine shared with other work the rates
// move a lot between rounds and the ratio mostly says how much CPU each
// run left to fauxqs (compare the cpu-us/msg figures). ESMD_SQS_BENCH_RUNS
// (a comma-separated subset of plain,esmd10,esmd100) picks the runs, for
// profiling one of them.
//
//	ESMD_SQS_BENCH_MESSAGES=100000 go test -run '^$' -bench Throughput -benchtime 1x ./pollers/sqs
func BenchmarkThroughput(b *testing.B) {
	f := newFauxqs(b)
	calls := &callCounter{}
	f.cfg.APIOptions = append(f.cfg.APIOptions, calls.middleware)
	// The SDK's default HTTP client, counting the connections it opens.
	f.cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			calls.add("dial")
			return dial(ctx, network, addr)
		}
	})
	f.c = awssqs.NewFromConfig(f.cfg)
	n := benchMessages()
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("ESMD_SQS_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	runs := []string{"plain", "esmd10", "esmd100"}
	if v := os.Getenv("ESMD_SQS_BENCH_RUNS"); v != "" {
		runs = strings.Split(v, ",")
	}
	inv := noopFunction(b, calls)
	rates := map[string][]float64{}
	cpu := map[string]time.Duration{}
	srvCPU := map[string]time.Duration{}
	ops := map[string]map[string]int64{}
	seen := map[string]bool{}
	for _, k := range runs {
		if seen[k] {
			b.Fatalf("ESMD_SQS_BENCH_RUNS: %q twice", k)
		}
		seen[k] = true
	}
	// Warm fauxqs up first (node compiles its hot paths during the first
	// thousands of calls): whichever run came first would be slower.
	wurl, _ := f.queue(b, false, nil)
	fill(b, f, wurl, min(n, 5000))
	plainLoop(b, f, wurl, min(n, 5000))
	for b.Loop() {
		for round := range rounds {
			// Each round starts with the next run, so none is always
			// first or last.
			for i := range runs {
				k := runs[(i+round)%len(runs)]
				url, arn := f.queue(b, false, nil)
				fill(b, f, url, n)
				calls.reset()
				start, c0, s0 := time.Now(), benchtest.CPUTime(), fauxqsCPU()
				switch k {
				case "plain":
					plainLoop(b, f, url, n)
				case "esmd10":
					esmdRun(b, f, inv, calls, url, arn, n, 10)
				case "esmd100":
					esmdRun(b, f, inv, calls, url, arn, n, 100)
				default:
					b.Fatalf("ESMD_SQS_BENCH_RUNS: unknown run %q", k)
				}
				rates[k] = append(rates[k], float64(n)/time.Since(start).Seconds())
				cpu[k] += benchtest.CPUTime() - c0
				srvCPU[k] += fauxqsCPU() - s0
				if ops[k] == nil {
					ops[k] = map[string]int64{}
				}
				for op, c := range calls.snapshot() {
					ops[k][op] += c
				}
				// Outside the timing: nothing is left.
				if v, inflight := f.count(b, url); v != 0 || inflight != 0 {
					b.Fatalf("%s: %d visible and %d in-flight messages left", k, v, inflight)
				}
			}
		}
	}
	plain := 0.0
	if len(rates["plain"]) > 0 {
		plain = benchtest.Median(rates["plain"])
		b.ReportMetric(plain, "plain-msgs/s")
	}
	for _, k := range runs {
		if k == "plain" {
			continue
		}
		m := benchtest.Median(rates[k])
		b.ReportMetric(m, k+"-msgs/s")
		if plain > 0 {
			b.ReportMetric(m/plain, k+"-ratio")
		}
	}
	b.Logf("rates per round: %v", rates)
	total := float64(n * rounds)
	for _, k := range runs {
		// CPU time of this process (esmd, the no-op function endpoint and
		// the SDK clients) and of fauxqs per message.
		b.ReportMetric(float64(cpu[k].Microseconds())/total, k+"-cpu-us/msg")
		b.ReportMetric(float64(srvCPU[k].Microseconds())/total, k+"-fauxqs-cpu-us/msg")
		var line []string
		for op, c := range ops[k] {
			line = append(line, fmt.Sprintf("%s=%.1f", op, float64(c)*1000/total))
		}
		sort.Strings(line)
		b.Logf("%s: SQS calls per 1,000 messages: %s", k, strings.Join(line, " "))
	}
}

// callCounter counts the SQS calls of a client by operation, the receives
// that returned fewer than 10 messages (ReceiveMessage<10), and the
// messages deleted.
type callCounter struct {
	mu      sync.Mutex
	by      map[string]int64
	deleted atomic.Int64
}

func (c *callCounter) reset() {
	c.mu.Lock()
	c.by = map[string]int64{}
	c.deleted.Store(0)
	c.mu.Unlock()
}

func (c *callCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.by))
	for k, v := range c.by {
		out[k] = v
	}
	return out
}

func (c *callCounter) add(op string) {
	c.mu.Lock()
	if c.by == nil {
		c.by = map[string]int64{}
	}
	c.by[op]++
	c.mu.Unlock()
}

func (c *callCounter) middleware(st *middleware.Stack) error {
	// Attempts, retries included.
	if err := st.Finalize.Add(middleware.FinalizeMiddlewareFunc("countAttempts", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleFinalize(ctx, in)
		if err != nil {
			c.add(awsmiddleware.GetOperationName(ctx) + "-attempt-error")
		}
		return out, md, err
	}), middleware.After); err != nil {
		return err
	}
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("countCalls", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleInitialize(ctx, in)
		op := awsmiddleware.GetOperationName(ctx)
		c.add(op)
		if err != nil {
			c.add(op + "-error")
		}
		switch r := out.Result.(type) {
		case *awssqs.ReceiveMessageOutput:
			if len(r.Messages) < maxMessages {
				c.add(op + "<10")
			}
		case *awssqs.DeleteMessageBatchOutput:
			c.deleted.Add(int64(len(r.Successful)))
			if len(r.Successful)+len(r.Failed) < maxMessages {
				c.add(op + "<10")
			}
		}
		return out, md, err
	}), middleware.After)
}

// fauxqsCPU returns the CPU time the fauxqs child processes of this test
// binary used so far (0 where /proc cannot tell).
func fauxqsCPU() time.Duration {
	ents, _ := os.ReadDir("/proc")
	var total time.Duration
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmd), "fauxqs") {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15), after the comm.
		s := string(st)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 || fields[1] != self {
			continue
		}
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += time.Duration(ut+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

// esmdRun drains a queue filled with n messages through a mapping with the
// given BatchSize, until calls counted n deletes (polling the queue's
// counts instead would add calls to fauxqs that the plain loop does not
// make).
func esmdRun(b *testing.B, f *fauxqs, inv dispatcher.Invoker, calls *callCounter, url, arn string, n int, batch int64) {
	m := mapping(arn, batch)
	m.FunctionArn = functionArn
	if batch > 10 {
		m.Config.MaximumBatchingWindowInSeconds = aws.Int64(1)
	}
	r := &pipeline.Runner{Source: Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
		p, err := Open(ctx, f.cfg, m, WithReceivers(benchConcurrency, benchConcurrency, benchConcurrency))
		if err != nil {
			return nil, err
		}
		return p, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rep := &benchReporter{}
	go func() { done <- r.Run(ctx, m, rep) }()
	// The poll interval (20 ms) is within the timing: small beside a run
	// of thousands of messages.
	testenv.Eventually(b, 10*time.Minute, func(context.Context) error {
		if d := calls.deleted.Load(); d < int64(n) {
			return fmt.Errorf("%d of %d messages deleted", d, n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if n, first := rep.problems(); n > 0 {
		// A failed batch waits out the visibility timeout: the run's
		// rate says more about that than about throughput.
		b.Logf("BatchSize %d: %d failed batches, first: %s", batch, n, first)
	}
}

// benchReporter counts the PROBLEM results of a benchmark's mapping.
type benchReporter struct {
	mu    sync.Mutex
	n     int
	first string
}

func (r *benchReporter) ProcessingResult(s string) {
	if strings.HasPrefix(s, "PROBLEM") {
		r.mu.Lock()
		if r.n == 0 {
			r.first = s
		}
		r.n++
		r.mu.Unlock()
	}
}

func (r *benchReporter) Disable(string) {}

func (r *benchReporter) problems() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.first
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
