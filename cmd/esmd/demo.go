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
	fs := flag.NewFlagSet("esmd demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 0, "stop after this long and print the summary (default: run until Ctrl-C)")
	rate := fs.Int("rate", 20, "records produced per second")
	addr := fs.String("addr", "127.0.0.1:0", "address of the event-source-mapping API during the demo")
	quiet := fs.Bool("quiet", false, "do not print each invocation, only the status lines")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *rate < 1 {
		return fmt.Errorf("--rate must be at least 1")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "esmd-demo-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, demoTopic))
	if err != nil {
		return fmt.Errorf("demo Kafka: %w", err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	d := &demo{out: stdout, quiet: *quiet, skipped: map[int32][]int64{}}
	fn := &http.Server{Handler: http.HandlerFunc(d.invoke), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = fn.Serve(ln) }()
	defer fn.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(demoTopic))
	if err != nil {
		return err
	}
	defer cl.Close()

	c := newCommon("esmd demo", io.Discard, *addr)
	c.dataDir = dir
	c.lambdaEndpoint = "http://" + ln.Addr().String()
	c.functionCheck = "never"
	c.logLevel = "warn"
	if err := c.validate(); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		served <- serve(sctx, c, c.logger(stderr), func(e *esm.Engine, apiAddr string) error {
			m, err := e.Create(sctx, &esm.Config{
				FunctionName: ptrTo("demo-function"), Topics: []string{demoTopic}, StartingPosition: ptrTo("TRIM_HORIZON"),
				BatchSize:              ptrTo(int64(10)),
				SelfManagedEventSource: &esm.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
				// AWS requires the VPC of an unauthenticated cluster; esmd
				// accepts it and connects directly.
				SourceAccessConfigurations: []esm.SourceAccessConfiguration{{Type: ptrTo("VPC_SUBNET"), URI: ptrTo("subnet:subnet-demo")}},
				FilterCriteria:             &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptrTo(demoFilter)}}},
			})
			if err != nil {
				return fmt.Errorf("demo mapping: %w", err)
			}
			d.group = m.UUID
			ready <- apiAddr
			return nil
		})
	}()
	var apiAddr string
	select {
	case apiAddr = <-ready:
	case err := <-served:
		return err
	}
	fmt.Fprintf(stdout, `esmd demo: in one process, a Kafka broker (kfake, %s) with topic %q (3 partitions),
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

`, strings.Join(seeds, ","), demoTopic, *rate, demoFilter, apiAddr, apiAddr, demoTopic)

	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	status := time.NewTicker(2 * time.Second)
	defer status.Stop()
	statuses := []string{"paid", "paid", "pending", "refunded"}
	for n := 0; ; {
		select {
		case <-ctx.Done():
			stop()
			if err := <-served; err != nil {
				return err
			}
			d.status(ctx, cl)
			fmt.Fprintf(stdout, "demo: produced %d records, filtered out %d, delivered %d to the function in %d invocations\n",
				d.produced.Load(), d.filtered, d.delivered.Load(), d.invocations.Load())
			return nil
		case <-served:
			return errors.New("esmd stopped")
		case <-status.C:
			d.status(ctx, cl)
			fmt.Fprintf(stdout, "produced %d  filtered out %d  delivered %d  invocations %d  batch size last %d max %d  lag %d\n",
				d.produced.Load(), d.filtered, d.delivered.Load(), d.invocations.Load(), d.lastBatch.Load(), d.maxBatch.Load(), d.lag)
		case <-tick.C:
			st := statuses[n%len(statuses)]
			v := fmt.Appendf(nil, `{"order":%d,"status":%q,"amount":%d.%02d}`, n, st, 5+n%95, n%100)
			n++
			cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "customer-%d", n%7), Value: v}, func(r *kgo.Record, err error) {
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
	}
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
