package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/esm"
)

// demoTopic is the demo's topic; demoFilter keeps paid orders.
const (
	demoTopic  = "demo-orders"
	demoFilter = `{"value":{"status":["paid"]}}`
)

// demoCmd is the first-run demo, `esmd demo [--duration D] [--rate N]`:
// in one process and with nothing installed, an in-process Kafka (kfake)
// with a producer writing sample orders, esmd's engine with an embedded
// store and a self-managed Kafka mapping with a filter, and a local
// function endpoint that prints what it receives; a status line shows
// records produced, filtered out, delivered, invocations, batch sizes and
// lag until Ctrl-C (or --duration), then a summary line.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseDemoFlags(args, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "esmd-demo-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cluster, cl, err := startDemoKafka()
	if err != nil {
		return err
	}
	defer cluster.Close()
	defer cl.Close()
	seeds := cluster.ListenAddrs()
	d := &demo{out: stdout, quiet: o.quiet, skipped: map[int32][]int64{}}
	fnURL, closeFn, err := d.serveFunction()
	if err != nil {
		return err
	}
	defer closeFn()
	eng, err := startDemoEngine(o.addr, dir, fnURL, seeds, stderr)
	if err != nil {
		return err
	}
	defer eng.stop()
	d.group = eng.uuid
	printDemoIntro(stdout, seeds, o.rate, eng.apiAddr)
	return d.run(ctx, cl, o.rate, eng)
}

// demoOpts are the flags of esmd demo.
type demoOpts struct {
	duration time.Duration
	rate     int
	addr     string
	quiet    bool
}

// parseDemoFlags parses esmd demo's flags; -h gives errHelp.
func parseDemoFlags(args []string, stderr io.Writer) (*demoOpts, error) {
	fs := flag.NewFlagSet("esmd demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &demoOpts{}
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long and print the summary (default: run until Ctrl-C)")
	fs.IntVar(&o.rate, "rate", 20, "records produced per second")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "address of the event-source-mapping API during the demo")
	fs.BoolVar(&o.quiet, "quiet", false, "do not print each invocation, only the status lines")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if o.rate < 1 {
		return nil, fmt.Errorf("--rate must be at least 1")
	}
	return o, nil
}

// startDemoKafka starts the in-process Kafka, with demoTopic in 3
// partitions, and a client that produces to demoTopic.
func startDemoKafka() (*kfake.Cluster, *kgo.Client, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, demoTopic))
	if err != nil {
		return nil, nil, fmt.Errorf("demo Kafka: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(demoTopic))
	if err != nil {
		cluster.Close()
		return nil, nil, err
	}
	return cluster, cl, nil
}

// serveFunction starts the demo's function endpoint (d.invoke) on a local
// port; it returns the endpoint's URL and the function that stops it.
func (d *demo) serveFunction() (url string, stop func(), err error) {
	fn := &http.Server{Handler: http.HandlerFunc(d.invoke), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = fn.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { fn.Close() }, nil
}

// demoEngine is esmd (engine and API) serving in the demo's process, with
// the demo's mapping created.
type demoEngine struct {
	apiAddr string
	uuid    string // the mapping's, also its Kafka consumer group
	// served receives serve's result once it returns.
	served <-chan error
	// stop stops serve; the demo then waits on served.
	stop context.CancelFunc
}

// startDemoEngine runs serve with a store in dir and the function endpoint
// fnURL, and creates the demo's mapping on the brokers seeds once the API
// listens. It returns when the mapping exists, or with serve's error.
func startDemoEngine(addr, dir, fnURL string, seeds []string, stderr io.Writer) (*demoEngine, error) {
	c := newCommon("esmd demo", io.Discard, addr)
	c.dataDir = dir
	c.lambdaEndpoint = fnURL
	c.functionCheck = "never"
	c.logLevel = "warn"
	if err := c.validate(); err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan demoEngine, 1)
	go func() {
		served <- serve(sctx, c, c.logger(stderr), func(e *esm.Engine, apiAddr string) error {
			m, err := e.Create(sctx, demoMapping(seeds))
			if err != nil {
				return fmt.Errorf("demo mapping: %w", err)
			}
			ready <- demoEngine{apiAddr: apiAddr, uuid: m.UUID}
			return nil
		})
	}()
	select {
	case eng := <-ready:
		eng.served, eng.stop = served, stop
		return &eng, nil
	case err := <-served:
		stop()
		return nil, err
	}
}

// demoMapping is the demo's mapping: self-managed Kafka on seeds, from the
// start of demoTopic, batches of 10, paid orders only.
func demoMapping(seeds []string) *esm.Config {
	return &esm.Config{
		FunctionName: ptrTo("demo-function"), Topics: []string{demoTopic}, StartingPosition: ptrTo("TRIM_HORIZON"),
		BatchSize:              ptrTo(int64(10)),
		SelfManagedEventSource: &esm.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		// AWS requires the VPC of an unauthenticated cluster; esmd
		// accepts it and connects directly.
		SourceAccessConfigurations: []esm.SourceAccessConfiguration{{Type: ptrTo("VPC_SUBNET"), URI: ptrTo("subnet:subnet-demo")}},
		FilterCriteria:             &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptrTo(demoFilter)}}},
	}
}

// printDemoIntro says what runs where, and how to run the same mapping
// against a real broker and function.
func printDemoIntro(w io.Writer, seeds []string, rate int, apiAddr string) {
	fmt.Fprintf(w, `esmd demo: in one process, a Kafka broker (kfake, %s) with topic %q (3 partitions),
a producer writing %d sample orders/s, a mapping (BatchSize 10, filter %s) and a local
function that prints what it receives. Ctrl-C stops.
  API: http://%s (aws lambda list-event-source-mappings --endpoint-url http://%s)

To run the same mapping against a real broker and function:
  esmd serve &
  aws lambda create-event-source-mapping --endpoint-url http://127.0.0.1:9000 \
    --function-name my-function --topics %s --starting-position TRIM_HORIZON --batch-size 10 \
    --self-managed-event-source '{"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":["broker:9092"]}}' \
    --source-access-configurations Type=VPC_SUBNET,URI=subnet:subnet-0 \
    --filter-criteria '{"Filters":[{"Pattern":"{\"value\":{\"status\":[\"paid\"]}}"}]}'

`, strings.Join(seeds, ","), demoTopic, rate, demoFilter, apiAddr, apiAddr, demoTopic)
}

// run produces rate records a second and prints a status line every 2s
// until ctx is done; then it stops the engine and prints the summary.
func (d *demo) run(ctx context.Context, cl *kgo.Client, rate int, eng *demoEngine) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	status := time.NewTicker(2 * time.Second)
	defer status.Stop()
	for n := 0; ; {
		select {
		case <-ctx.Done():
			eng.stop()
			if err := <-eng.served; err != nil {
				return err
			}
			d.status(ctx, cl)
			fmt.Fprintf(d.out, "demo: produced %d records, filtered out %d, delivered %d to the function in %d invocations\n",
				d.produced.Load(), d.filtered, d.delivered.Load(), d.invocations.Load())
			return nil
		case <-eng.served:
			return errors.New("esmd stopped")
		case <-status.C:
			d.status(ctx, cl)
			fmt.Fprintf(d.out, "produced %d  filtered out %d  delivered %d  invocations %d  batch size last %d max %d  lag %d\n",
				d.produced.Load(), d.filtered, d.delivered.Load(), d.invocations.Load(), d.lastBatch.Load(), d.maxBatch.Load(), d.lag)
		case <-tick.C:
			d.produce(ctx, cl, n)
			n++
		}
	}
}

// demoStatuses are the statuses of sample orders, in turn: half are paid.
var demoStatuses = []string{"paid", "paid", "pending", "refunded"}

// produce writes sample order n, and remembers where the records the
// filter drops landed.
func (d *demo) produce(ctx context.Context, cl *kgo.Client, n int) {
	st := demoStatuses[n%len(demoStatuses)]
	v := fmt.Appendf(nil, `{"order":%d,"status":%q,"amount":%d.%02d}`, n, st, 5+n%95, n%100)
	cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "customer-%d", (n+1)%7), Value: v}, func(r *kgo.Record, err error) {
		if err != nil {
			return
		}
		d.produced.Add(1)
		if st != "paid" {
			d.mu.Lock()
			d.skipped[r.Partition] = append(d.skipped[r.Partition], r.Offset)
			d.mu.Unlock()
		}
	})
}

// demo is the demo's function endpoint and its counters.
type demo struct {
	out   io.Writer
	quiet bool
	group string

	produced, delivered, invocations, lastBatch, maxBatch atomic.Int64

	mu      sync.Mutex
	skipped map[int32][]int64 // offsets of records the filter drops
	// filtered and lag are computed by status, in the demo's goroutine.
	filtered, lag int64
}

// invoke answers the Lambda Invoke API: it prints the batch and returns
// null, as a function that succeeded.
func (d *demo) invoke(w http.ResponseWriter, r *http.Request) {
	var ev events.KafkaEvent
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for part, recs := range ev.Records {
		n += len(recs)
		if !d.quiet && len(recs) > 0 {
			v, _ := base64.StdEncoding.DecodeString(recs[0].Value)
			fmt.Fprintf(d.out, "  function: %d records from %s, offsets %d-%d, first %s\n", len(recs), part, recs[0].Offset, recs[len(recs)-1].Offset, v)
		}
	}
	d.delivered.Add(int64(n))
	d.invocations.Add(1)
	d.lastBatch.Store(int64(n))
	for {
		m := d.maxBatch.Load()
		if int64(n) <= m || d.maxBatch.CompareAndSwap(m, int64(n)) {
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "null")
}

// status reads the mapping's committed offsets: records behind them that
// the filter drops are "filtered out"; the records past them are the lag.
func (d *demo) status(ctx context.Context, cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = d.group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = demoTopic, []int32{0, 1, 2}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var committed, filtered int64
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Offset < 0 {
				continue
			}
			committed += p.Offset
			for _, off := range d.skipped[p.Partition] {
				if off < p.Offset {
					filtered++
				}
			}
		}
	}
	d.filtered = filtered
	d.lag = max(d.produced.Load()-committed, 0)
}

func ptrTo[T any](v T) *T { return &v }
