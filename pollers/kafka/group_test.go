package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

// fnEndpoint is a function behind the Lambda Invoke API: it records every
// record it is given (per member, by "lane/offset"), takes delay per
// invocation, and tracks how many invocations overlap. With hold > 0 each
// invocation waits until hold invocations are in flight at once (or
// release is closed), which proves that concurrency can reach hold.
type fnEndpoint struct {
	delay time.Duration
	hold  int

	mu       sync.Mutex
	cond     *sync.Cond
	seen     map[string]int
	perMem   map[string]map[string]int // member -> lane/offset -> count
	inflight int
	peak     int
	release  chan struct{}
}

func newFn(delay time.Duration, hold int) *fnEndpoint {
	f := &fnEndpoint{delay: delay, hold: hold, seen: map[string]int{}, perMem: map[string]map[string]int{}, release: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fnEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev events.KafkaEvent
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The function name is the member's: .../functions/<ARN>/invocations.
	member := strings.TrimSuffix(r.URL.Path, "/invocations")
	member = member[strings.LastIndexAny(member, ":/")+1:]
	f.mu.Lock()
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	if f.perMem[member] == nil {
		f.perMem[member] = map[string]int{}
	}
	for lane, recs := range ev.Records {
		for _, kr := range recs {
			k := lane + "/" + strconv.FormatInt(kr.Offset, 10)
			f.seen[k]++
			f.perMem[member][k]++
		}
	}
	f.cond.Broadcast()
	for f.hold > 0 && f.inflight < f.hold && !closed(f.release) {
		f.cond.Wait()
	}
	f.mu.Unlock()
	if f.delay > 0 {
		time.Sleep(f.delay) // the function's work: simulated, on purpose
	}
	f.mu.Lock()
	f.inflight--
	f.mu.Unlock()
	_, _ = io.WriteString(w, "null")
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stopHolding releases the invocations waiting for company.
func (f *fnEndpoint) stopHolding() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !closed(f.release) {
		close(f.release)
	}
	f.cond.Broadcast()
}

// counts returns distinct records, deliveries beyond one per record, and
// the distinct records of member.
func (f *fnEndpoint) counts(member string) (distinct, dups, mine int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.seen {
		dups += n - 1
	}
	return len(f.seen), dups, len(f.perMem[member])
}

// runMember runs one esmd worker's pipeline for m against fn's endpoint,
// as member name, until the test ends.
func runMember(t *testing.T, fn http.Handler, m *esm.Mapping, name string, tune func(*Config)) {
	t.Helper()
	srv := httptest.NewServer(fn)
	t.Cleanup(srv.Close)
	inv, err := dispatcher.NewLambdaInvoker(testenv.AWSConfig(srv.URL), dispatcher.WithDirectHTTP(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	cfg, err := ConfigFor(context.Background(), m, Env{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.CommitInterval = 50 * time.Millisecond
	if tune != nil {
		tune(&cfg)
	}
	mm := *m
	mm.FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:" + name
	r := &pipeline.Runner{Source: SelfManagedDescriptor(), Invoker: inv, RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond,
		Open: func(ctx context.Context, _ *esm.Mapping) (source.Poller, error) { return New(ctx, cfg) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, &mm, &reporter{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestPipelineRevokeDropsUnseenRecords runs two esmd workers (pipeline and
// poller each) in one consumer group over 4 partitions with a slow
// function; the second joins mid-stream and takes partitions from the
// first. The first member holds far more fetched records of each
// partition than its pipeline has (MaxOutstanding, here three batches): at the
// revocation the held ones are dropped, the few in the pipeline finish
// well within RevokeTimeout and are committed, and the new owner starts
// after them. So no record reaches the function twice. (Before hand-outs
// were bounded, the pipeline buffered every fetched record, a revocation
// gave up after RevokeTimeout, and the buffered records of the revoked
// partition were invoked by both members.)
func TestPipelineRevokeDropsUnseenRecords(t *testing.T) {
	testenv.Skip(t)
	s := seeds(t)
	topic := newTopic(t, s, 4)
	prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	written := 0
	write := func(n int) {
		var recs []*kgo.Record
		for i := range n {
			for pt := range int32(4) {
				recs = append(recs, &kgo.Record{Partition: pt, Value: fmt.Appendf(nil, `{"n":%d}`, written+i)})
			}
		}
		produce(t, prod, recs...)
		written += n
	}
	// Each invocation takes 50 ms: 300 records of a partition in batches
	// of 5 take 3 s to invoke, a hand-out (15 records) 150 ms.
	write(300)
	fn := newFn(50*time.Millisecond, 0)
	m := smk(s, topic)
	m.UUID = "revoke-" + topic
	m.Config.BatchSize = ptr(int64(5))
	m.Config.MaximumBatchingWindowInSeconds = ptr(int64(0))
	// Three batches handed out per partition, and a RevokeTimeout that
	// the records handed out (150 ms of invocations) fit in many times
	// over, while the backlog of a partition (seconds) does not.
	tune := func(c *Config) { c.MaxOutstanding, c.RevokeTimeout = 15, time.Second }
	runMember(t, fn, m, "first", tune)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if d, _, _ := fn.counts("first"); d < 40 {
			return fmt.Errorf("%d records delivered", d)
		}
		return nil
	})
	runMember(t, fn, m, "second", tune)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if _, _, mine := fn.counts("second"); mine == 0 {
			write(1)
			return fmt.Errorf("the second member delivered nothing")
		}
		return nil
	})
	write(20)
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		if d, _, _ := fn.counts(""); d != 4*written {
			return fmt.Errorf("%d of %d records delivered", d, 4*written)
		}
		for pt := range int32(4) {
			if c := committed(t, s, m.UUID, topic, pt); c != int64(written) {
				return fmt.Errorf("partition %d committed at %d of %d", pt, c, written)
			}
		}
		return nil
	})
	d, dups, _ := fn.counts("")
	_, _, first := fn.counts("first")
	_, _, second := fn.counts("second")
	t.Logf("%d records: first member %d, second %d, %d delivered twice", d, first, second, dups)
	if dups != 0 {
		t.Errorf("%d records were delivered twice across the handover", dups)
	}
}

// TestMaxPollersBoundsConcurrency: ProvisionedPollerConfig.MaximumPollers 2
// over 8 busy partitions keeps at most 2 invocations in flight, and every
// record still arrives in offset order per partition; without it, the same
// mapping reaches 3 concurrent invocations (each invocation waits until 3
// are in flight, so reaching 3 is certain, not a matter of timing).
func TestMaxPollersBoundsConcurrency(t *testing.T) {
	testenv.Skip(t)
	s := seeds(t)
	for _, tc := range []struct {
		name       string
		maxPollers *int64
		hold       int
		wantPeak   func(int) bool
	}{
		{"MaximumPollers=2", ptr(int64(2)), 0, func(p int) bool { return p >= 1 && p <= 2 }},
		{"on-demand", nil, 3, func(p int) bool { return p >= 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t, s, 8)
			prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			const perPart = 40
			var recs []*kgo.Record
			for i := range perPart {
				for pt := range int32(8) {
					recs = append(recs, &kgo.Record{Partition: pt, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
				}
			}
			produce(t, prod, recs...)
			fn := newFn(2*time.Millisecond, tc.hold)
			m := smk(s, topic)
			m.UUID = "pollers-" + topic
			m.Config.BatchSize = ptr(int64(10))
			m.Config.MaximumBatchingWindowInSeconds = ptr(int64(0))
			if tc.maxPollers != nil {
				m.Config.ProvisionedPollerConfig = &esm.ProvisionedPollerConfig{MinimumPollers: ptr(int64(1)), MaximumPollers: tc.maxPollers}
			}
			runMember(t, fn, m, "f", nil)
			testenv.Eventually(t, 30*time.Second, func(context.Context) error {
				fn.mu.Lock()
				peak := fn.peak
				fn.mu.Unlock()
				if tc.hold > 0 && peak >= tc.hold {
					fn.stopHolding()
				}
				if d, _, _ := fn.counts(""); d != 8*perPart {
					return fmt.Errorf("%d of %d records delivered", d, 8*perPart)
				}
				return nil
			})
			fn.stopHolding()
			fn.mu.Lock()
			peak := fn.peak
			fn.mu.Unlock()
			t.Logf("peak concurrent invocations %d", peak)
			if !tc.wantPeak(peak) {
				t.Errorf("peak concurrent invocations %d", peak)
			}
		})
	}
}

// TestOffsetLag follows OffsetLag through a partition's life: before any
// record is done it counts from the first record fetched; it drops as
// records finish (only up to the first unfinished one), grows with new
// records, is 0 when everything is done, and a member restarting from the
// committed offset reports the same lag.
func TestOffsetLag(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 1)
	lane := topic + "-0"
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	for i := range 10 {
		produce(t, prod, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	cfg := Config{Seeds: s, Topics: []string{topic}, Group: topic + ".g"}
	p := open(t, cfg)
	if lag := p.OffsetLag(); len(lag) != 0 {
		t.Errorf("OffsetLag before any fetch %v, want none", lag)
	}
	recs := pollN(t, p, 10, 20*time.Second)
	lag := func(want int64) {
		t.Helper()
		if got := p.OffsetLag(); len(got) != 1 || got[lane] != want {
			t.Errorf("OffsetLag %v, want %s: %d", got, lane, want)
		}
	}
	lag(10)
	ctx := context.Background()
	// Offsets 0-2 and 5 done: the position is 3.
	if err := p.Done(ctx, append(recs[:3:3], recs[5])); err != nil {
		t.Fatal(err)
	}
	lag(7)
	for i := 10; i < 15; i++ {
		produce(t, prod, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	recs = append(recs, pollN(t, p, 5, 20*time.Second)...)
	lag(12)
	if err := p.Done(ctx, recs[3:]); err != nil {
		t.Fatal(err)
	}
	lag(0)
	// Restart behind: only 0-2 committed by a member that finished no more.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Group += "2"
	p = open(t, cfg)
	recs = pollN(t, p, 15, 20*time.Second)
	if err := p.Done(ctx, recs[:3]); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = open(t, cfg)
	defer p.Close()
	if r := pollN(t, p, 1, 20*time.Second); r[0].ID != "3" {
		t.Fatalf("restart read from %s, want 3", r[0].ID)
	}
	lag(12)
}

// TestSlowPartitionPaused: a partition whose records are not finishing
// (a slow function) while kgo keeps fetching it is paused once it holds
// twice its share of fetched records and at least two of its fetches, so
// the other partitions are still fetched; when its records finish it is
// resumed and read on from where the poller stopped, without a gap or a
// duplicate. A partition holding less than two fetches is not paused (a
// pause would only make the broker send again what kgo buffered), and
// the other partitions are fetched all the same.
func TestSlowPartitionPaused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks int // produce calls, each one record batch; one batch per fetch
		paused bool
	}{
		{"many fetches", 12, true},
		{"one fetch", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) { testSlowPartition(t, tc.chunks, tc.paused) })
	}
}

func testSlowPartition(t *testing.T, chunks int, wantPaused bool) {
	s := seeds(t)
	topic := newTopic(t, s, 4)
	slowLane := topic + "-0"
	prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(20000))
	const slow = 6000 // twice the 2,000-record share and more
	var recs []*kgo.Record
	for i := range slow {
		recs = append(recs, &kgo.Record{Partition: 0, Value: []byte(strconv.Itoa(i))})
		if len(recs) == slow/chunks {
			produce(t, prod, recs...)
			recs = recs[:0]
		}
	}
	// Many fetches: one record batch per fetch and partition (the broker
	// sends at least one batch, whatever the limit). One fetch: the
	// default limit takes in every batch the producer made of the 6,000.
	cfg := Config{Seeds: s, Topics: []string{topic}, Group: topic + ".g", MaxOutstanding: 10}
	if chunks > 1 {
		cfg.ClientOpts = []kgo.Opt{kgo.FetchMaxPartitionBytes(1)}
	}
	p := open(t, cfg)
	defer p.Close()
	ctx := context.Background()
	poll := func() []source.Record {
		pctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		got, _ := p.Poll(pctx)
		return got
	}
	paused := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		pt := p.owned[slowLane]
		return pt != nil && pt.paused
	}
	held := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		if pt := p.owned[slowLane]; pt != nil {
			return len(pt.held)
		}
		return 0
	}
	var pending []source.Record // handed out, not done: the slow function
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		pending = append(pending, poll()...)
		if wantPaused && !paused() {
			return fmt.Errorf("%s not paused; %d records handed out", slowLane, len(pending))
		}
		if !wantPaused && held()+len(pending) < slow {
			return fmt.Errorf("%s: %d records held, %d handed out", slowLane, held(), len(pending))
		}
		return nil
	})
	if paused() != wantPaused {
		t.Fatalf("%s paused %v, want %v", slowLane, paused(), wantPaused)
	}
	if len(pending) != 10 {
		t.Fatalf("%d records of the slow partition handed out, want MaxOutstanding 10", len(pending))
	}
	// The other partitions are still fetched.
	recs = recs[:0]
	for pt := int32(1); pt < 4; pt++ {
		recs = append(recs, &kgo.Record{Partition: pt, Value: []byte("other")})
	}
	produce(t, prod, recs...)
	others := 0
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		for _, r := range poll() {
			if r.Lane == slowLane {
				t.Fatalf("the slow partition handed out %s past MaxOutstanding", r.ID)
			}
			others++
		}
		if others != 3 {
			return fmt.Errorf("%d of 3 records of the other partitions", others)
		}
		return nil
	})
	// The function catches up: every record of the slow partition comes,
	// in order, once.
	next := int64(0)
	testenv.Eventually(t, 60*time.Second, func(wctx context.Context) error {
		// Round after round while records come (no poll interval between
		// them: 600 rounds of MaxOutstanding); a poll that brings none
		// waits for the next try.
		for {
			for _, r := range pending {
				if off, _ := strconv.ParseInt(r.Seq, 10, 64); r.Lane != slowLane || off != next {
					t.Fatalf("%s offset %d, want %s offset %d", r.Lane, off, slowLane, next)
				}
				next++
			}
			if err := p.Done(ctx, pending); err != nil {
				t.Fatal(err)
			}
			pending = poll()
			if next >= slow {
				return nil
			}
			if len(pending) == 0 || wctx.Err() != nil {
				return fmt.Errorf("%d of %d records", next, slow)
			}
		}
	})
	if len(pending) > 0 {
		t.Fatalf("%d records past the end", len(pending))
	}
	if paused() {
		t.Errorf("%s still paused", slowLane)
	}
}
