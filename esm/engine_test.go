package esm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
)

// recRunner records which mappings run, with which configuration.
type recRunner struct {
	mu      sync.Mutex
	running map[string]*Mapping
	starts  int
	release chan struct{} // when set, Run waits for it after ctx is done
	fail    error         // when set, Run returns it at once
}

func newRecRunner() *recRunner { return &recRunner{running: map[string]*Mapping{}} }

func (r *recRunner) Run(ctx context.Context, m *Mapping, rep Reporter) error {
	r.mu.Lock()
	r.starts++
	fail := r.fail
	if fail == nil {
		r.running[m.UUID] = m
	}
	r.mu.Unlock()
	if fail != nil {
		return fail
	}
	rep.ProcessingResult("OK")
	<-ctx.Done()
	if r.release != nil {
		<-r.release
	}
	r.mu.Lock()
	delete(r.running, m.UUID)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recRunner) get(id string) *Mapping {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id]
}

func TestLifecycleStatesAndPipelines(t *testing.T) {
	ctx := context.Background()
	run := newRecRunner()
	e := newTestEngine(t, WithRunner(SourceKinesis, run))
	cfg := sourceBase(SourceKinesis)
	cfg.FunctionName = sp("f")
	m, err := e.Create(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateCreating || m.StateTransitionReason != "User action" || m.LastProcessingResult != "No records processed" {
		t.Fatalf("create: %s %q %q", m.State, m.StateTransitionReason, m.LastProcessingResult)
	}
	waitState(t, e, m.UUID, StateEnabled)
	testenv.EventuallyTrue(t, 5*time.Second, "pipeline start", func() bool { return run.get(m.UUID) != nil })
	testenv.EventuallyTrue(t, 5*time.Second, "LastProcessingResult OK", func() bool {
		got, _ := e.Get(ctx, m.UUID)
		return got.LastProcessingResult == "OK"
	})

	// Update: Updating, then back to Enabled with a pipeline on the new config.
	u, err := e.Update(ctx, m.UUID, &Config{BatchSize: ip(7)})
	if err != nil {
		t.Fatal(err)
	}
	if u.State != StateUpdating || *u.Config.BatchSize != 7 {
		t.Fatalf("update: %s batch %d", u.State, *u.Config.BatchSize)
	}
	waitState(t, e, m.UUID, StateEnabled)
	testenv.EventuallyTrue(t, 5*time.Second, "pipeline restarted with the new batch size", func() bool {
		r := run.get(m.UUID)
		return r != nil && *r.Config.BatchSize == 7
	})

	// Disable: Disabling, then Disabled with no pipeline.
	d, err := e.Update(ctx, m.UUID, &Config{Enabled: bp(false)})
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateDisabling {
		t.Fatalf("disable: %s", d.State)
	}
	waitState(t, e, m.UUID, StateDisabled)
	if run.get(m.UUID) != nil {
		t.Fatal("pipeline still running while Disabled")
	}

	// Enable again.
	en, err := e.Update(ctx, m.UUID, &Config{Enabled: bp(true)})
	if err != nil {
		t.Fatal(err)
	}
	if en.State != StateEnabling {
		t.Fatalf("enable: %s", en.State)
	}
	waitState(t, e, m.UUID, StateEnabled)
	testenv.EventuallyTrue(t, 5*time.Second, "pipeline running again", func() bool { return run.get(m.UUID) != nil })

	// Delete: Deleting with the full configuration, then 404.
	del, err := e.Delete(ctx, m.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if del.State != StateDeleting || *del.Config.BatchSize != 7 {
		t.Fatalf("delete: %s", del.State)
	}
	testenv.EventuallyTrue(t, 5*time.Second, "mapping removed", func() bool {
		_, err := e.Get(ctx, m.UUID)
		var ae *Error
		return errors.As(err, &ae) && ae.Type == ErrTypeResourceNotFound
	})
	if run.get(m.UUID) != nil {
		t.Fatal("pipeline still running after delete")
	}
}

func TestTransitionalStatesRefuseChanges(t *testing.T) {
	ctx := context.Background()
	e, run, m := heldMapping(t)
	// The pipeline is slow to stop, so the mapping stays Disabling.
	if _, err := e.Update(ctx, m.UUID, &Config{Enabled: bp(false)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Update(ctx, m.UUID, &Config{BatchSize: ip(3)})
	if ae := asAPIError(t, err); ae.Type != ErrTypeResourceInUse || ae.Status != 400 || ae.MessageKey() != "Message" {
		t.Errorf("update while Disabling: %v", ae)
	}
	_, err = e.Delete(ctx, m.UUID)
	if ae := asAPIError(t, err); ae.Type != ErrTypeResourceInUse {
		t.Errorf("delete while Disabling: %v", ae)
	}
	close(run.release)
	waitState(t, e, m.UUID, StateDisabled)
}

// heldMapping creates an SQS mapping whose pipeline, once running, stops
// only when the test closes run.release.
func heldMapping(t *testing.T) (*Engine, *recRunner, *Mapping) {
	t.Helper()
	run := newRecRunner()
	run.release = make(chan struct{})
	e := newTestEngine(t, WithRunner(SourceSQS, run))
	m, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, m.UUID, StateEnabled)
	testenv.EventuallyTrue(t, 5*time.Second, "pipeline start", func() bool { return run.get(m.UUID) != nil })
	return e, run, m
}

func TestCreateDisabledIsDisabledAtOnce(t *testing.T) {
	run := newRecRunner()
	e := newTestEngine(t, WithRunner(SourceSQS, run))
	m, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), Enabled: bp(false)})
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateDisabled {
		t.Fatalf("state %s, want Disabled", m.State)
	}
	// A negative check needs a pause: the engine starts an enabled
	// mapping's runner within milliseconds, so a wrongly started one
	// would show within 50 ms.
	testenv.Consistently(t, 50*time.Millisecond, func(context.Context) error {
		run.mu.Lock()
		defer run.mu.Unlock()
		if run.starts != 0 {
			return errors.New("a disabled mapping was started")
		}
		return nil
	})
}

func TestFailingRunnerIsRestartedAndReported(t *testing.T) {
	run := newRecRunner()
	run.fail = errors.New("queue unreachable")
	other := newRecRunner()
	e := newTestEngine(t, WithRunner(SourceSQS, run), WithRunner(SourceKinesis, other))
	m, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sourceBase(SourceKinesis)
	cfg.FunctionName = sp("f")
	healthy, err := e.Create(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 5*time.Second, "restarts", func() bool { run.mu.Lock(); defer run.mu.Unlock(); return run.starts >= 3 })
	got, _ := e.Get(context.Background(), m.UUID)
	if got.LastProcessingResult != "PROBLEM: queue unreachable" || got.State != StateEnabled {
		t.Errorf("got %s %q", got.State, got.LastProcessingResult)
	}
	if c := got.Configuration(); c.LastProcessingResult != "PROBLEM: queue unreachable" {
		t.Errorf("an SQS problem is not shown: %q", c.LastProcessingResult)
	}
	// The broken source does not stop the other mapping.
	testenv.EventuallyTrue(t, 5*time.Second, "healthy mapping runs", func() bool { return other.get(healthy.UUID) != nil })
}

func TestSourceWithoutPollerSaysSo(t *testing.T) {
	e := newTestEngine(t)
	m, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, e, m.UUID, StateEnabled)
	if !strings.HasPrefix(got.LastProcessingResult, "PROBLEM: this esmd has no poller for sqs") {
		t.Errorf("LastProcessingResult %q", got.LastProcessingResult)
	}
}

func TestLambdaInitiatedDisable(t *testing.T) {
	var once sync.Once
	r := RunnerFunc(func(ctx context.Context, m *Mapping, rep Reporter) error {
		once.Do(func() { rep.Disable("EVENT_SOURCE_AUTHN_ERROR") })
		<-ctx.Done()
		return nil
	})
	e := newTestEngine(t, WithRunner(SourceMQ, r))
	cfg := sourceBase(SourceMQ)
	cfg.FunctionName = sp("f")
	m, err := e.Create(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, e, m.UUID, StateDisabled)
	if got.StateTransitionReason != "EVENT_SOURCE_AUTHN_ERROR" || got.Enabled() {
		t.Errorf("reason %q enabled %v", got.StateTransitionReason, got.Enabled())
	}
}

func TestListPaginationAndFilters(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Millisecond); return now }
	e := newTestEngine(t, WithClock(clock))
	var ids []string
	for i := range 250 {
		fn := "f"
		if i%2 == 1 {
			fn = "g"
		}
		m, err := e.Create(ctx, &Config{FunctionName: sp(fn), EventSourceArn: sp(fmt.Sprintf("%s-%d", sqsArn, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.UUID)
	}
	var got []string
	var marker *string
	pages := 0
	for {
		page, next, err := e.List(ctx, ListInput{Marker: marker, MaxItems: ip(1000)})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > ListPageSize {
			t.Fatalf("page of %d", len(page))
		}
		for _, m := range page {
			got = append(got, m.UUID)
		}
		if next == "" {
			break
		}
		marker = &next
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%d pages, %d items; want 3 pages in creation order", pages, len(got))
	}
	page, next, err := e.List(ctx, ListInput{MaxItems: ip(7), FunctionName: sp("arn:aws:lambda:us-east-1:111111111111:function:g")})
	if err != nil || len(page) != 7 || next == "" {
		t.Fatalf("MaxItems 7: %d items, next %q, err %v", len(page), next, err)
	}
	for _, m := range page {
		if !strings.HasSuffix(m.FunctionArn, ":g") {
			t.Errorf("filter by function returned %s", m.FunctionArn)
		}
	}
	page, _, err = e.List(ctx, ListInput{EventSourceArn: sp(sqsArn + "-3"), FunctionName: sp("g")})
	if err != nil || len(page) != 1 || page[0].UUID != ids[3] {
		t.Fatalf("filter by source and function: %v %v", page, err)
	}
	_, _, err = e.List(ctx, ListInput{MaxItems: ip(0)})
	if ae := asAPIError(t, err); ae.Message != "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1" {
		t.Errorf("MaxItems 0: %q", ae.Message)
	}
	_, _, err = e.List(ctx, ListInput{Marker: sp("!!!")})
	if ae := asAPIError(t, err); ae.Type != ErrTypeInvalidParameterValue {
		t.Errorf("bad marker: %v", ae)
	}
}

func TestFunctionNameVariations(t *testing.T) {
	// test_function_name_variations: the stored FunctionArn for each form.
	base := "arn:aws:lambda:us-east-1:111111111111:function:fn"
	cases := map[string]string{
		"fn":                               base,
		"111111111111:function:fn:$LATEST": base + ":$LATEST",
		"111111111111:function:fn:1":       base + ":1",
		"111111111111:function:fn:myalias": base + ":myalias",
		base + ":$LATEST":                  base,
		base + ":1":                        base + ":1",
		base + ":myalias":                  base + ":myalias",
		"fn:PROD":                          base + ":PROD",
		"arn:aws-cn:lambda:cn-north-1:111111111111:function:fn": "arn:aws-cn:lambda:cn-north-1:111111111111:function:fn",
		"us-west-2:111111111111:function:fn":                    "arn:aws:lambda:us-west-2:111111111111:function:fn",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			e := newTestEngine(t)
			m, err := e.Create(context.Background(), &Config{FunctionName: sp(in), EventSourceArn: sp(sqsArn)})
			if err != nil {
				t.Fatal(err)
			}
			if m.FunctionArn != want {
				t.Errorf("FunctionArn %s, want %s", m.FunctionArn, want)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	smk := func(servers ...string) Config {
		c := sourceBase(SourceKafka)
		c.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"] = servers
		return c
	}
	cases := []struct {
		name          string
		first, second Config
		message       string // %s is the first mapping's UUID
	}{
		{"SQS", sourceBase(SourceSQS), sourceBase(SourceSQS),
			`An event source mapping with SQS arn (" ` + sqsArn + ` ") and function (" f ") already exists. Please update or delete the existing mapping with UUID %s`},
		{"Kinesis", sourceBase(SourceKinesis), sourceBase(SourceKinesis),
			`The event source arn (" ` + kinesisArn + ` ") and function (" f ") provided mapping already exists. Please update or delete the existing mapping with UUID %s`},
		{"DynamoDB", sourceBase(SourceDynamoDB), sourceBase(SourceDynamoDB),
			`The event source arn (" ` + ddbArn + ` ") and function (" f ") provided mapping already exists. Please update or delete the existing mapping with UUID %s`},
		{"self-managed Kafka", smk("kafka:1000"), smk("kafka:1000"),
			`An event source mapping with event source ("kafka:1000"), function ("f"), topics ("topic") already exists. Please update or delete the existing mapping with UUID %s`},
		{"self-managed Kafka overlapping servers", smk("kafka:1000"), smk("kafka:1000", "kafka:2000"),
			`An event source mapping with event source ("kafka:1000,kafka:2000"), function ("f"), topics ("topic") already exists. Please update or delete the existing mapping with UUID %s`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t)
			tc.first.FunctionName, tc.second.FunctionName = sp("f"), sp("f")
			m, err := e.Create(context.Background(), &tc.first)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Create(context.Background(), &tc.second)
			ae := asAPIError(t, err)
			if want := fmt.Sprintf(tc.message, m.UUID); ae.Type != ErrTypeResourceConflict || ae.Status != 409 || ae.Message != want {
				t.Errorf("got %s %d %q\nwant %q", ae.Type, ae.Status, ae.Message, want)
			}
			// Another function on the same source is fine.
			tc.second.FunctionName = sp("other")
			if _, err := e.Create(context.Background(), &tc.second); err != nil {
				t.Errorf("second function: %v", err)
			}
		})
	}
}

func TestUpdateRules(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	m, err := e.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, m.UUID, StateEnabled)
	// Recorded: the batch-window rule applies on update too.
	_, err = e.Update(ctx, m.UUID, &Config{BatchSize: ip(15)})
	if ae := asAPIError(t, err); ae.Message != "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10" {
		t.Errorf("update: %q", ae.Message)
	}
	u, err := e.Update(ctx, m.UUID, &Config{BatchSize: ip(15), MaximumBatchingWindowInSeconds: ip(1),
		FilterCriteria: &FilterCriteria{Filters: []Filter{{Pattern: sp(`{"body":["x"]}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if *u.Config.BatchSize != 15 || *u.Config.MaximumBatchingWindowInSeconds != 1 || u.Config.FilterCriteria == nil {
		t.Fatalf("merged config %+v", u.Config)
	}
	waitState(t, e, m.UUID, StateEnabled)
	// Members an update does not name keep their values; FilterCriteria {} removes filtering.
	u, err = e.Update(ctx, m.UUID, &Config{FilterCriteria: &FilterCriteria{}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Config.FilterCriteria != nil || *u.Config.BatchSize != 15 {
		t.Fatalf("after clearing filters: %+v", u.Config)
	}
	waitState(t, e, m.UUID, StateEnabled)
	// Create-only members are ignored on update.
	u, err = e.Update(ctx, m.UUID, &Config{EventSourceArn: sp(kinesisArn), StartingPosition: sp("LATEST")})
	if err != nil {
		t.Fatal(err)
	}
	if *u.Config.EventSourceArn != sqsArn || u.Config.StartingPosition != nil {
		t.Fatalf("create-only members changed: %+v", u.Config)
	}
	waitState(t, e, m.UUID, StateEnabled)
	// Members the source does not take are refused on update too.
	_, err = e.Update(ctx, m.UUID, &Config{ParallelizationFactor: ip(2)})
	if ae := asAPIError(t, err); ae.Message != "Unsupported ParallelizationFactor parameter for given event source mapping type." {
		t.Errorf("got %q", ae.Message)
	}
	_, err = e.Update(ctx, "00000000-0000-0000-0000-000000000000", &Config{BatchSize: ip(1)})
	if ae := asAPIError(t, err); ae.Type != ErrTypeResourceNotFound || ae.Message != "The resource you requested does not exist." || ae.MessageKey() != "Message" {
		t.Errorf("unknown uuid: %v", ae)
	}
}

func TestKafkaConsumerGroupCannotChange(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	cfg := sourceBase(SourceKafka)
	cfg.FunctionName = sp("f")
	m, err := e.Create(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := *m.Config.SelfManagedKafkaEventSourceConfig.ConsumerGroupId; got != m.UUID {
		t.Errorf("default consumer group %s, want the UUID %s", got, m.UUID)
	}
	waitState(t, e, m.UUID, StateEnabled)
	_, err = e.Update(ctx, m.UUID, &Config{SelfManagedKafkaEventSourceConfig: &KafkaEventSourceConfig{ConsumerGroupId: sp("other")}})
	if ae := asAPIError(t, err); ae.Message != "ConsumerGroupId cannot be updated." {
		t.Errorf("got %q", ae.Message)
	}
}

// memStore is an in-memory Store for restart tests of the engine alone.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) SaveMapping(_ context.Context, id string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = append([]byte(nil), b...)
	return nil
}
func (s *memStore) DeleteMapping(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}
func (s *memStore) LoadMappings(context.Context) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.m {
		out[k] = v
	}
	return out, nil
}

func TestRestartKeepsMappingsAndSettlesTransitions(t *testing.T) {
	ctx := context.Background()
	store := &memStore{m: map[string][]byte{}}
	e1, err := New(ctx, WithStore(store), WithAccount(testAccount))
	if err != nil {
		t.Fatal(err)
	}
	e1.Start()
	a, _ := e1.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	b, _ := e1.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn + "2"), Enabled: bp(false)})
	waitState(t, e1, a.UUID, StateEnabled)
	if err := e1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash in the middle of an update of b.
	var mb Mapping
	json.Unmarshal(store.m[b.UUID], &mb)
	mb.State = StateUpdating
	data, _ := json.Marshal(mb)
	store.m[b.UUID] = data

	run := newRecRunner()
	e2, err := New(ctx, WithStore(store), WithAccount(testAccount), WithRunner(SourceSQS, run))
	if err != nil {
		t.Fatal(err)
	}
	e2.Start()
	defer e2.Close(ctx)
	ga := waitState(t, e2, a.UUID, StateEnabled)
	gb := waitState(t, e2, b.UUID, StateDisabled)
	if ga.Arn != a.Arn || *ga.Config.EventSourceArn != sqsArn || gb.Enabled() {
		t.Errorf("restored %+v %+v", ga, gb)
	}
	testenv.EventuallyTrue(t, 5*time.Second, "restored mapping runs", func() bool { return run.get(a.UUID) != nil })
	if run.get(b.UUID) != nil {
		t.Error("disabled mapping runs after restart")
	}
}

func TestCorruptStoredMappingIsAnError(t *testing.T) {
	store := &memStore{m: map[string][]byte{"abc": []byte("{not json")}}
	_, err := New(context.Background(), WithStore(store))
	if err == nil || !strings.Contains(err.Error(), "abc") {
		t.Fatalf("err = %v, want an error naming the mapping", err)
	}
}

func TestTags(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	m, err := e.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), Tags: map[string]string{"testtag": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	tags, err := e.ListTags(ctx, m.Arn)
	if err != nil || len(tags) != 1 || tags["testtag"] != "v" {
		t.Fatalf("tags on create: %v %v", tags, err)
	}
	if err := e.TagResource(ctx, m.Arn, map[string]string{"A": "a", "testtag": "w"}); err != nil {
		t.Fatal(err)
	}
	if err := e.UntagResource(ctx, m.Arn, []string{"testtag", "missing"}); err != nil {
		t.Fatal(err)
	}
	tags, _ = e.ListTags(ctx, m.Arn)
	if len(tags) != 1 || tags["A"] != "a" {
		t.Fatalf("tags %v", tags)
	}
	missing := "arn:aws:lambda:us-east-1:111111111111:event-source-mapping:00000000-0000-0000-0000-000000000000"
	_, err = e.ListTags(ctx, missing)
	if ae := asAPIError(t, err); ae.Type != ErrTypeResourceNotFound || ae.Message != "Event source mapping not found: "+missing {
		t.Errorf("missing: %v", ae)
	}
	_, err = e.ListTags(ctx, m.Arn+":alias")
	want := "1 validation error detected: Value '" + m.Arn + ":alias' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: " + patResource
	if ae := asAPIError(t, err); ae.Type != ErrTypeValidation || ae.Message != want {
		t.Errorf("aliased arn: %v", ae)
	}
}
