package documentdb_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/benchtest"
	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

// BenchmarkThroughput measures events/s from a collection pre-filled with
// documents of about 1 KB to a no-op Invoke endpoint, through esmd's
// pipeline with this poller (opened by the descriptor as esmd serve opens
// it: --docdb-cluster, the BASIC_AUTH secret, checkpoints in a bbolt store
// every 100 ms, TRIM_HORIZON, the default 500 ms window, which a backlog
// never waits for) and through a plain driver loop: Watch from the first
// event, Next until BatchSize events are in hand, the same event shape
// (AppendEvent in the DocumentDB envelope), Invoke, next batch, with the
// resume token kept in memory only (no store: the comparison favours the
// plain loop). Both have one batch in flight, as AWS runs one DocumentDB
// invocation at a time (spec DOC-2), and the same invoker (SigV4-signed
// direct HTTP).
//
// Each side reads a fresh mongotest server (in this process, as the
// function endpoint is) filled just before it, so neither meets a server
// holding the other's events; the side that goes first alternates, and the
// medians of the rounds are compared. One run of it does every round,
// whatever b.N:
//
//	go test -run '^$' -bench Throughput -benchtime 1x -v ./pollers/documentdb/
//
// ESMD_DOCDB_BENCH sets the events per round (default 100,000),
// ESMD_DOCDB_BENCH_BATCH BatchSize (default 100) and
// ESMD_DOCDB_BENCH_ROUNDS the rounds (default 4).
func BenchmarkThroughput(bm *testing.B) {
	var t testing.TB = bm
	n, _ := strconv.Atoi(os.Getenv("ESMD_DOCDB_BENCH"))
	if n <= 0 {
		n = 100000
	}
	batch := 100
	if v, _ := strconv.Atoi(os.Getenv("ESMD_DOCDB_BENCH_BATCH")); v > 0 {
		batch = v
	}
	rounds, _ := strconv.Atoi(os.Getenv("ESMD_DOCDB_BENCH_ROUNDS"))
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

	var plain, ours, ratios, plainCPU, oursCPU []float64
	for i := range rounds {
		var p, o benchRun
		runPlain := func() {
			s, c := fill(t, n)
			p = plainLoop(t, s, c, inv, n, batch)
			closeBench(s, c)
		}
		runOurs := func() {
			s, c := fill(t, n)
			o = esmdRun(t, s, c, inv, n, batch)
			closeBench(s, c)
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
		t.Logf("round %d: esmd %.0f events/s (%v CPU/event, %.1f allocs and %.0f B/event), plain %.0f events/s (%v CPU/event, %.1f allocs and %.0f B/event), ratio %.2f",
			i+1, o.rate, o.cpu.Round(100*time.Nanosecond), o.allocs, o.bytes, p.rate, p.cpu.Round(100*time.Nanosecond), p.allocs, p.bytes, o.rate/p.rate)
	}
	t.Logf("BatchSize %d, %d events of 1 KB documents: esmd %.0f events/s %v, plain driver Watch loop %.0f events/s %v, ratio of medians %.2f, ratios per round %v; process CPU per event (server included): esmd %.1f us %v, plain %.1f us %v (%d invocations)",
		batch, n, benchtest.Median(ours), benchtest.Format(ours, 0), benchtest.Median(plain), benchtest.Format(plain, 0), benchtest.Median(ours)/benchtest.Median(plain), benchtest.Format(ratios, 2),
		benchtest.Median(oursCPU), benchtest.Format(oursCPU, 0), benchtest.Median(plainCPU), benchtest.Format(plainCPU, 0), invokes.Load())
	bm.ReportMetric(benchtest.Median(ours), "esmd-events/s")
	bm.ReportMetric(benchtest.Median(plain), "plain-events/s")
	bm.ReportMetric(benchtest.Median(ours)/benchtest.Median(plain), "ratio")
	bm.ReportMetric(0, "ns/op") // one op is every round: meaningless
}

// fill starts a server and inserts n documents of about 1 KB into a
// collection, in InsertMany calls of 1,000; closeBench closes both.
func fill(t testing.TB, n int) (*mongotest.Server, *mongo.Collection) {
	t.Helper()
	s, err := mongotest.Start(mongotest.Options{Username: testenv.MongoUser, Password: testenv.MongoPassword})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := mongo.Connect(options.Client().ApplyURI(s.URI()).
		SetAuth(options.Credential{Username: testenv.MongoUser, Password: testenv.MongoPassword}))
	if err != nil {
		t.Fatal(err)
	}
	c := cl.Database(db).Collection("bench")
	pad := make([]byte, 1000)
	for i := range pad {
		pad[i] = byte('a' + rand.IntN(26))
	}
	start := time.Now()
	docs := make([]any, 0, 1000)
	for i := range n {
		docs = append(docs, bson.D{{Key: "n", Value: int32(i)}, {Key: "pad", Value: string(pad)}})
		if len(docs) == cap(docs) || i == n-1 {
			if _, err := c.InsertMany(context.Background(), docs); err != nil {
				t.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	t.Logf("inserted %d documents in %v", n, time.Since(start).Round(time.Millisecond))
	runtime.GC()
	return s, c
}

// closeBench disconnects the client of c, then closes s (a client whose
// server is gone would wait for it to end its sessions).
func closeBench(s *mongotest.Server, c *mongo.Collection) {
	_ = c.Database().Client().Disconnect(context.Background())
	_ = s.Close()
}

// esmdRun runs the pipeline with the descriptor until n events were
// finished.
func esmdRun(t testing.TB, s *mongotest.Server, c *mongo.Collection, inv *timedInvoker, n, batch int) benchRun {
	m := mapping()
	m.UUID = "bench"
	m.Config.DocumentDBEventSourceConfig.CollectionName = aws(c.Name())
	m.Config.DocumentDBEventSourceConfig.FullDocument = nil
	bs := int64(batch)
	m.Config.BatchSize = &bs
	env := sourceEnv(t, map[string][]string{documentdb.FlagCluster: {clusterArn + "=" + plainURI(s)}})
	var finished atomic.Int64
	all := make(chan struct{})
	r := &pipeline.Runner{Source: documentdb.Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
		p, err := documentdb.Descriptor().Open(ctx, env, m)
		if err != nil {
			return nil, err
		}
		return &counting{Poller: p, n: &finished, want: int64(n), all: all}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	mk := begin()
	go func() { done <- r.Run(ctx, m, newReporter()) }()
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		t.Fatalf("esmd finished %d of %d events", finished.Load(), n)
	}
	res := mk.end(n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return res
}

func aws(s string) *string { return &s }

// plainLoop reads the collection's change stream with the driver from its
// first event and invokes full batches one at a time.
func plainLoop(t testing.TB, s *mongotest.Server, c *mongo.Collection, inv *timedInvoker, n, batch int) benchRun {
	ctx := context.Background()
	env := payload.DocumentDB(clusterArn)
	bld := payload.NewBuilder(env)
	mk := begin()
	cl, err := mongo.Connect(options.Client().ApplyURI(s.URI()).
		SetAuth(options.Credential{Username: testenv.MongoUser, Password: testenv.MongoPassword}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(ctx)
	cs, err := cl.Database(db).Collection(c.Name()).Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetStartAtOperationTime(&bson.Timestamp{T: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	var token bson.Raw
	for done := 0; done < n; {
		bld.Reset(env)
		for bld.Len() < min(batch, n-done) && cs.Next(ctx) {
			ev, err := documentdb.AppendEvent(nil, cs.Current)
			if err != nil {
				t.Fatal(err)
			}
			bld.Add("", ev)
		}
		if err := cs.Err(); err != nil {
			t.Fatal(err)
		}
		for {
			res, err := inv.Invoke(ctx, "arn:aws:lambda:us-east-1:000000000000:function:f", bld.Bytes())
			if err == nil && !res.Failed() {
				break
			}
		}
		token = cs.ResumeToken()
		done += bld.Len()
	}
	res := mk.end(n)
	if len(token) == 0 {
		t.Fatal("no resume token")
	}
	return res
}

// benchRun is one side's figures: events/s, and the process's CPU time,
// heap allocations and bytes per event (the in-process server and
// function endpoint included, the same for both sides).
type benchRun struct {
	rate          float64
	cpu           time.Duration
	allocs, bytes float64
}

type mark struct {
	start time.Time
	cpu   time.Duration
	mem   runtime.MemStats
}

func begin() mark {
	m := mark{start: time.Now(), cpu: benchtest.CPUTime()}
	runtime.ReadMemStats(&m.mem)
	return m
}

func (m mark) end(n int) benchRun {
	elapsed := time.Since(m.start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return benchRun{rate: float64(n) / elapsed.Seconds(), cpu: (benchtest.CPUTime() - m.cpu) / time.Duration(n),
		allocs: float64(ms.Mallocs-m.mem.Mallocs) / float64(n), bytes: float64(ms.TotalAlloc-m.mem.TotalAlloc) / float64(n)}
}

// timedInvoker passes on the direct invoker's promise to release payloads,
// so that esmd's pipeline reuses event memory as it does under esmd serve.
type timedInvoker struct {
	dispatcher.Invoker
}

func (ti *timedInvoker) ReleasesPayload() bool {
	rp, ok := ti.Invoker.(interface{ ReleasesPayload() bool })
	return ok && rp.ReleasesPayload()
}

// counting counts the records the pipeline finished.
type counting struct {
	source.Poller
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
