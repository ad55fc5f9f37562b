package documentdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

// function is an in-process function for the pipeline tests: it checks
// each event's envelope, records the events' bodies (an insert's
// fullDocument.body, else its operationType) per invocation, and fails
// when fail says so.
type function struct {
	mu       sync.Mutex
	calls    int
	inflight int
	overlap  bool // two invocations were in flight at once
	batches  [][]string
	bad      []string // what was wrong with events
	fail     func(call int) bool
}

func (f *function) Invoke(_ context.Context, _ string, ev []byte) (dispatcher.Result, error) {
	f.mu.Lock()
	f.inflight++
	f.overlap = f.overlap || f.inflight > 1
	f.calls++
	call := f.calls
	f.mu.Unlock()
	time.Sleep(time.Millisecond) // long enough for an overlap to show
	var e struct {
		EventSourceArn string
		EventSource    string
		Events         []struct {
			Event struct {
				OperationType string
				FullDocument  struct{ Body string }
			}
		}
	}
	err := json.Unmarshal(ev, &e)
	var batch []string
	for _, x := range e.Events {
		b := x.Event.FullDocument.Body
		if b == "" {
			b = x.Event.OperationType
		}
		batch = append(batch, b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if err != nil || e.EventSource != "aws:docdb" || e.EventSourceArn != clusterArn || len(e.Events) == 0 {
		f.bad = append(f.bad, fmt.Sprintf("%v: %.200s", err, ev))
	}
	f.batches = append(f.batches, batch)
	if f.fail != nil && f.fail(call) {
		return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled", Payload: []byte(`{"errorMessage":"no"}`)}, nil
	}
	return dispatcher.Result{StatusCode: 200, Payload: []byte(`null`)}, nil
}

// seen returns the bodies of every invocation, in order.
func (f *function) seen() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]string, len(f.batches))
	for i, b := range f.batches {
		out[i] = slices.Clone(b)
	}
	return out
}

// distinct returns the bodies in the order first invoked, once each.
func (f *function) distinct() []string {
	var out []string
	got := map[string]bool{}
	for _, b := range f.seen() {
		for _, x := range b {
			if !got[x] {
				got[x] = true
				out = append(out, x)
			}
		}
	}
	return out
}

type reporter struct {
	mu       sync.Mutex
	results  []string
	disabled chan string
}

func newReporter() *reporter { return &reporter{disabled: make(chan string, 1)} }

func (r *reporter) ProcessingResult(s string) {
	r.mu.Lock()
	r.results = append(r.results, s)
	r.mu.Unlock()
}
func (r *reporter) Disable(reason string) { r.disabled <- reason }
func (r *reporter) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return ""
	}
	return r.results[len(r.results)-1]
}
func (r *reporter) all() []string { r.mu.Lock(); defer r.mu.Unlock(); return slices.Clone(r.results) }

// run runs a mapping of collection name on s through pipeline.Runner with
// the descriptor, as esmd does (the cluster named by --docdb-cluster, the
// BASIC_AUTH secret from a secrets file), until the test ends.
func run(t *testing.T, s *mongotest.Server, name string, fn dispatcher.Invoker, edit func(*esm.Mapping, *source.Env)) (*reporter, *pipeline.Metrics) {
	t.Helper()
	m := mapping()
	m.Config.DocumentDBEventSourceConfig.CollectionName = &name
	m.Config.DocumentDBEventSourceConfig.FullDocument = nil
	bs := int64(10)
	m.Config.BatchSize = &bs
	env := sourceEnv(t, map[string][]string{documentdb.FlagCluster: {clusterArn + "=" + plainURI(s)}})
	if edit != nil {
		edit(m, env)
	}
	metrics := pipeline.NewMetrics()
	r := &pipeline.Runner{Source: documentdb.Descriptor(), Env: env, Invoker: fn, Metrics: metrics,
		RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}
	rep := newReporter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, m, rep) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return rep, metrics
}

// TestPipelineRetriesUntilSuccess: a function failing twice gets the same
// batch again until it succeeds (spec DOC-6: no retry limit), then the
// rest, in order, one invocation at a time (DOC-2); nothing is lost, and
// a restart does not redeliver what was done.
func TestPipelineRetriesUntilSuccess(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	c := coll(t, s, name)
	insert(t, c, docs("p", 35)...)
	st := openStore(t)
	fn := &function{fail: func(call int) bool { return call <= 2 }}
	var rep *reporter
	t.Run("run", func(t *testing.T) { // the pipeline stops when the subtest ends
		rep, _ = run(t, s, name, fn, func(_ *esm.Mapping, env *source.Env) { env.Store = st })
		testenv.Eventually(t, 20*time.Second, func(context.Context) error {
			if n := len(fn.distinct()); n != 35 || rep.last() != "OK" {
				return fmt.Errorf("%d events invoked, last result %q", n, rep.last())
			}
			return nil
		})
	})
	if got := fn.distinct(); !slices.Equal(got, bodyList("p", 35)) {
		t.Errorf("events invoked in the order %v", got)
	}
	b := fn.seen()
	if len(b) < 3 || !slices.Equal(b[0], b[1]) || !slices.Equal(b[1], b[2]) || !slices.Equal(b[0], bodyList("p", 10)) {
		t.Errorf("invocations %v: want the first batch of 10 three times", b)
	}
	for i, x := range b {
		if len(x) > 10 {
			t.Errorf("invocation %d has %d events, BatchSize is 10", i, len(x))
		}
	}
	if fn.overlap {
		t.Error("two invocations were in flight at once")
	}
	if !slices.Contains(rep.all(), "PROBLEM: Function call failed") {
		t.Errorf("results %v: no PROBLEM while the function failed", rep.all())
	}
	if len(fn.bad) > 0 {
		t.Errorf("bad events: %v", fn.bad)
	}

	// A restart reads on after the checkpoint: only the new events.
	fn2 := &function{}
	run(t, s, name, fn2, func(_ *esm.Mapping, env *source.Env) { env.Store = st })
	insert(t, c, docs("q", 2)...)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		if got := fn2.distinct(); len(got) < 2 {
			return fmt.Errorf("%d events after the restart", len(got))
		}
		return nil
	})
	if got := fn2.distinct(); !slices.Equal(got, []string{"q-0000", "q-0001"}) {
		t.Errorf("after a restart the function got %v", got)
	}
}

// TestPipelineWindow: events arriving on an idle stream within the 500 ms
// window that starts with the first are invoked together (DOC-5).
func TestPipelineWindow(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	c := coll(t, s, name)
	fn := &function{}
	st := openStore(t)
	rep, metrics := run(t, s, name, fn, func(m *esm.Mapping, env *source.Env) {
		m.Config.StartingPosition = sp("LATEST")
		env.Store = st
	})
	// The stream is open once it checkpointed where LATEST started.
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		if _, ok, _ := st.Position(ctx, mapping().UUID, db+"."+name); !ok {
			return fmt.Errorf("the stream is not open yet")
		}
		return nil
	})
	start := time.Now()
	for i := range 3 {
		insert(t, c, bson.D{{Key: "body", Value: fmt.Sprintf("w-%d", i)}})
		time.Sleep(50 * time.Millisecond)
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if n := len(fn.distinct()); n != 3 {
			return fmt.Errorf("%d events invoked", n)
		}
		return nil
	})
	if b := fn.seen(); len(b) != 1 {
		t.Errorf("3 events within the window were invoked as %v", b)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("invoked after %v, before the 500 ms window", d)
	}
	if rep.last() != "OK" {
		t.Errorf("last result %q", rep.last())
	}
	var out bytes.Buffer
	metrics.WriteTo(&out)
	if !strings.Contains(out.String(), `esmd_iterator_age_milliseconds{uuid="6f1c0d4e-0000-4000-8000-0000000000d0",function="arn:aws:lambda:us-east-1:000000000000:function:f",source="documentdb",lane="esmd.`+name+`"}`) {
		t.Errorf("no IteratorAge for the stream in\n%s", out.String())
	}
}

// TestPipelineDropsOversizeEvent: an event over 6 MB is not invoked; it is
// dropped and counted (DOC-7: OversizedRecordCount; esmd's
// DroppedEventCount), and the stream goes on past it.
func TestPipelineDropsOversizeEvent(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	c := coll(t, s, name)
	insert(t, c, bson.D{{Key: "body", Value: "big"}, {Key: "pad", Value: strings.Repeat("x", 6<<20)}})
	insert(t, c, bson.D{{Key: "body", Value: "small"}})
	fn := &function{}
	_, metrics := run(t, s, name, fn, nil)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		if got := fn.distinct(); len(got) != 1 {
			return fmt.Errorf("the function got %v", got)
		}
		var out bytes.Buffer
		metrics.WriteTo(&out)
		if !strings.Contains(out.String(), "esmd_dropped_events_total{") || !strings.Contains(out.String(), `source="documentdb"} 1`+"\n") {
			return fmt.Errorf("not counted as dropped:\n%s", out.String())
		}
		return nil
	})
	if got := fn.distinct(); got[0] != "small" {
		t.Errorf("the function got %v", got)
	}
}

// TestPipelineHistoryLostDisables: when the stream's position falls out of
// its history, the mapping is disabled, saying why (DOC-6).
func TestPipelineHistoryLostDisables(t *testing.T) {
	s := private(t, mongotest.Options{})
	c := coll(t, s, "c")
	insert(t, c, docs("h", 3)...)
	fn := &function{}
	rep, _ := run(t, s, "c", fn, nil)
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if n := len(fn.distinct()); n != 3 {
			return fmt.Errorf("%d events invoked", n)
		}
		return nil
	})
	s.TrimHistory()
	select {
	case reason := <-rep.disabled:
		if reason != documentdb.ReasonHistoryLost {
			t.Errorf("disabled with %q", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mapping was not disabled")
	}
	if r := rep.last(); !strings.HasPrefix(r, "PROBLEM: documentdb: ") || !strings.Contains(r, "ChangeStreamHistoryLost") || !strings.Contains(r, "create a new event source mapping") {
		t.Errorf("LastProcessingResult %q", r)
	}
}

// TestPipelineWrongCredentialsDisable: credentials the cluster refuses
// disable the mapping with EVENT_SOURCE_AUTHN_ERROR.
func TestPipelineWrongCredentialsDisable(t *testing.T) {
	s := testenv.Mongo(t)
	bad := filepath.Join(t.TempDir(), "bad.json")
	b, _ := json.Marshal(map[string]map[string]string{secretArn: {"username": testenv.MongoUser, "password": "wrong"}})
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	fn := &function{}
	rep, _ := run(t, s, collName(t), fn, func(_ *esm.Mapping, env *source.Env) {
		env.Secrets, _ = secrets.Load(bad, nil)
	})
	select {
	case reason := <-rep.disabled:
		if reason != "EVENT_SOURCE_AUTHN_ERROR" {
			t.Errorf("disabled with %q", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mapping was not disabled")
	}
	if r := rep.last(); !strings.HasPrefix(r, "PROBLEM: ") || !strings.Contains(r, "Authentication failed") {
		t.Errorf("LastProcessingResult %q", r)
	}
}
