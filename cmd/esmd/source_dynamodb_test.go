package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/esmd/esmd/internal/ddbstreams"
	"github.com/esmd/esmd/internal/testenv"
)

// ddbEnv is one DynamoDB Streams end-to-end setup: the in-repo DynamoDB
// Streams server (esmd reaches it through AWS_ENDPOINT_URL_DYNAMODB_STREAMS,
// as a user would), testfn on RIE behind a recording proxy, and esmd serve
// on a data directory, restartable.
type ddbEnv struct {
	srv  *ddbstreams.Server
	fn   *ddbFunction
	dir  string
	url  string // the function's endpoint (the proxy)
	addr string // serve's address
	cl   *lambda.Client
	stp  func()
	seq  int // bodies are numbered in production order
}

func newDDBEnv(t *testing.T) *ddbEnv {
	t.Helper()
	testenv.Skip(t)
	s, err := ddbstreams.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", s.URL())
	fn := &ddbFunction{rie: testenv.RIE(t)}
	proxy := httptest.NewServer(fn)
	t.Cleanup(proxy.Close)
	e := &ddbEnv{srv: s, fn: fn, dir: t.TempDir(), url: proxy.URL}
	e.start(t)
	t.Cleanup(func() { e.stop() })
	return e
}

func (e *ddbEnv) start(t *testing.T) {
	t.Helper()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = e.dir
	c.invokeMode = "rie"
	c.lambdaEndpoint = e.url
	addr, stop := serveWith(t, c)
	e.addr, e.cl, e.stp = addr, client(addr), stop
}

func (e *ddbEnv) stop() {
	if e.stp != nil {
		e.stp()
		e.stp = nil
	}
}

func (e *ddbEnv) restart(t *testing.T) {
	e.stop()
	e.start(t)
}

func (e *ddbEnv) stream(t *testing.T, table string, shards int) string {
	t.Helper()
	arn, err := e.srv.CreateStream(ddbstreams.StreamConfig{Table: table, ViewType: ddbtypes.StreamViewTypeNewAndOldImages,
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	return arn
}

// ddbWrite is one item change a test writes.
type ddbWrite struct {
	key       string
	directive string    // testfn directive JSON, carried in NewImage.testfn.S
	kind      string    // NewImage.kind.S, when set
	created   time.Time // zero: now
}

// put writes changes and returns their bodies and where they went.
func (e *ddbEnv) put(t *testing.T, arn string, ws ...ddbWrite) ([]string, []ddbstreams.Appended) {
	t.Helper()
	var bodies []string
	var out []ddbstreams.Appended
	for _, w := range ws {
		b := fmt.Sprintf("%06d", e.seq)
		e.seq++
		keys := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: w.key}}
		img := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: w.key}, "body": &ddbtypes.AttributeValueMemberS{Value: b}}
		if w.kind != "" {
			img["kind"] = &ddbtypes.AttributeValueMemberS{Value: w.kind}
		}
		if w.directive != "" {
			img["testfn"] = &ddbtypes.AttributeValueMemberS{Value: w.directive}
		}
		a, err := e.srv.Put(arn, ddbstreams.Change{EventName: ddbtypes.OperationTypeInsert, Keys: keys, NewImage: img, Created: w.created})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
		out = append(out, a)
	}
	return bodies, out
}

func (e *ddbEnv) mapping(t *testing.T, in *lambda.CreateEventSourceMappingInput) string {
	t.Helper()
	in.FunctionName = aws.String("function")
	if in.StartingPosition == "" {
		in.StartingPosition = types.EventSourcePositionTrimHorizon
	}
	out, err := e.cl.CreateEventSourceMapping(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.UUID)
}

// ddbFunction is the function's endpoint: a proxy in front of testfn on
// RIE that records every event esmd sent and the function's answer.
// testfn finds its directive in a record's payload as plain JSON, while a
// DynamoDB NewImage is typed JSON; the proxy passes the directive a test
// wrote in NewImage.testfn.S as testfn's top-level "testfn" member (what
// the function does is still testfn's, on RIE). fail-self becomes
// fail-items naming the records that asked; a tumbling-window event gets
// mode window.
type ddbFunction struct {
	rie    string
	mu     sync.Mutex
	events []*ddbEvent
}

type ddbEvent struct {
	Records []struct {
		EventID        string `json:"eventID"`
		EventSourceARN string `json:"eventSourceARN"`
		Dynamodb       struct {
			Keys     map[string]struct{ S string }
			NewImage map[string]struct{ S string }
			// SequenceNumber is the itemIdentifier.
			SequenceNumber              string
			ApproximateCreationDateTime float64
		} `json:"dynamodb"`
	} `json:"Records"`
	Window *struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"window"`
	State   json.RawMessage `json:"state"`
	ShardID string          `json:"shardId"`
	Final   bool            `json:"isFinalInvokeForWindow"`
	ARN     string          `json:"eventSourceARN"`

	raw      []byte
	response []byte
}

func (f *ddbFunction) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev := &ddbEvent{raw: body}
	if err := json.Unmarshal(body, ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var directive json.RawMessage
	var failSelf []string
	for _, rec := range ev.Records {
		d, ok := rec.Dynamodb.NewImage["testfn"]
		if !ok {
			continue
		}
		var mode struct{ Mode string }
		_ = json.Unmarshal([]byte(d.S), &mode)
		if mode.Mode == "fail-self" {
			failSelf = append(failSelf, rec.Dynamodb.SequenceNumber)
		} else if directive == nil {
			directive = json.RawMessage(d.S)
		}
	}
	switch {
	case ev.Window != nil:
		directive = json.RawMessage(`{"mode":"window"}`)
	case directive == nil && failSelf != nil:
		directive, _ = json.Marshal(map[string]any{"mode": "fail-items", "items": failSelf})
	}
	fwd := body
	if directive != nil {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(body, &m)
		m["testfn"] = directive
		fwd, _ = json.Marshal(m)
	}
	resp, err := http.Post(f.rie+r.URL.Path, "application/json", bytes.NewReader(fwd))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	ev.response = out
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}

// delivery is one record of one invocation.
type delivery struct {
	event          int
	key, body, seq string
}

// deliveries returns the records of a stream's invocations, in order.
func (f *ddbFunction) deliveries(arn string) []delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []delivery
	for i, ev := range f.events {
		for _, r := range ev.Records {
			if r.EventSourceARN == arn {
				out = append(out, delivery{i, r.Dynamodb.Keys["pk"].S, r.Dynamodb.NewImage["body"].S, r.Dynamodb.SequenceNumber})
			}
		}
	}
	return out
}

func (f *ddbFunction) streamEvents(arn string) []*ddbEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ddbEvent
	for _, ev := range f.events {
		if ev.ARN == arn || (len(ev.Records) > 0 && ev.Records[0].EventSourceARN == arn) {
			out = append(out, ev)
		}
	}
	return out
}

// waitDelivered waits until every body in want was delivered.
func (f *ddbFunction) waitDelivered(t *testing.T, arn string, want []string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		seen := map[string]bool{}
		for _, d := range f.deliveries(arn) {
			seen[d.body] = true
		}
		for _, b := range want {
			if !seen[b] {
				return fmt.Errorf("record %s not delivered yet (%d distinct so far)", b, len(seen))
			}
		}
		return nil
	})
}

// checkOnceInKeyOrder: every record of the stream was delivered exactly
// once, and each key's records in the order written.
func checkOnceInKeyOrder(t *testing.T, ds []delivery) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]string{}
	for _, d := range ds {
		if seen[d.body] {
			t.Errorf("record %s delivered twice", d.body)
		}
		seen[d.body] = true
		if prev := last[d.key]; d.body < prev {
			t.Errorf("key %s: %s delivered after %s", d.key, d.body, prev)
		}
		last[d.key] = d.body
	}
}

func lastPerShard(as []ddbstreams.Appended) map[string]string {
	out := map[string]string{}
	for _, a := range as {
		out[a.ShardID] = a.SequenceNumber
	}
	return out
}

func keyed(n, keys int) []ddbWrite {
	ws := make([]ddbWrite, n)
	for i := range ws {
		ws[i].key = fmt.Sprintf("k%02d", i%keys)
	}
	return ws
}

// TestServeDynamoDBEndToEnd runs esmd serve on the in-repo DynamoDB Streams
// server with testfn on RIE: a missing stream and AT_TIMESTAMP are refused
// with AWS's messages; TRIM_HORIZON delivers two shards' records, a split
// during consumption delivers every parent record before any child record,
// nothing lost or reordered per key; the parent is checkpointed at
// SHARD_END; LATEST skips what was written before; esmd restarted on the
// same directory resumes at the checkpoints without redelivering.
func TestServeDynamoDBEndToEnd(t *testing.T) {
	e := newDDBEnv(t)
	ctx := context.Background()

	missing := "arn:aws:dynamodb:us-east-1:000000000000:table/esmd-no-such-table/stream/2025-02-22T03:03:25.490"
	_, err := e.cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(missing), StartingPosition: types.EventSourcePositionTrimHorizon})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" || ae.ErrorMessage() != "Stream not found: "+missing {
		t.Fatalf("create on a missing stream: %v", err)
	}

	arn := e.stream(t, "orders", 2)
	_, err = e.cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionAtTimestamp, StartingPositionTimestamp: aws.Time(time.Now())})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" || ae.ErrorMessage() != "Unsupported starting position for arn type: "+arn {
		t.Fatalf("AT_TIMESTAMP: %v", err)
	}

	// TRIM_HORIZON, then a split while the mapping reads.
	want, first := e.put(t, arn, keyed(300, 12)...)
	if len(lastPerShard(first)) != 2 {
		t.Fatalf("records went to %d shards, want 2", len(lastPerShard(first)))
	}
	uuid := e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(7)})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := len(e.fn.deliveries(arn)); n < 10 {
			return fmt.Errorf("%d records delivered", n)
		}
		return nil
	})
	ids, _ := e.srv.Shards(arn)
	parent := ids[0]
	kids, err := e.srv.Split(arn, parent, 2)
	if n := len(e.fn.deliveries(arn)); n >= len(first) {
		t.Fatalf("the split came after every record was delivered (%d); it must come during consumption", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	more, second := e.put(t, arn, keyed(60, 12)...)
	want = append(want, more...)
	e.fn.waitDelivered(t, arn, want)
	ds := e.fn.deliveries(arn)
	checkOnceInKeyOrder(t, ds)
	shardOf := map[string]string{}
	for _, a := range append(first, second...) {
		shardOf[a.SequenceNumber] = a.ShardID
	}
	lastParent, firstChild := -1, -1
	for i, d := range ds {
		switch shardOf[d.seq] {
		case parent:
			lastParent = i
		case kids[0], kids[1]:
			if firstChild < 0 {
				firstChild = i
			}
		}
	}
	if firstChild < 0 || lastParent > firstChild {
		t.Errorf("parent record delivered at %d, first child record at %d", lastParent, firstChild)
	}
	cps := lastPerShard(second)
	cps[parent] = "SHARD_END"
	cps[ids[1]] = lastPerShard(append(first, second...))[ids[1]]
	waitCheckpoints(t, e.dir, uuid, cps)

	// LATEST: nothing written before the mapping read the stream.
	larn := e.stream(t, "latest", 1)
	before, _ := e.put(t, larn, keyed(5, 2)...)
	e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(larn), StartingPosition: types.EventSourcePositionLatest})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if e.srv.StreamCalls("GetRecords", larn) == 0 {
			return errors.New("the LATEST mapping has not read yet")
		}
		return nil
	})
	after, _ := e.put(t, larn, keyed(5, 2)...)
	e.fn.waitDelivered(t, larn, after)
	for _, d := range e.fn.deliveries(larn) {
		for _, b := range before {
			if d.body == b {
				t.Errorf("LATEST delivered %s, written before the mapping started", b)
			}
		}
	}

	// Restart: resume at the checkpoints, deliver what came meanwhile, and
	// nothing twice (a graceful stop writes the coalesced checkpoints).
	e.restart(t)
	more, third := e.put(t, arn, keyed(20, 12)...)
	want = append(want, more...)
	e.fn.waitDelivered(t, arn, want)
	checkOnceInKeyOrder(t, e.fn.deliveries(arn))
	cps = lastPerShard(append(append(first, second...), third...))
	delete(cps, parent)
	waitCheckpoints(t, e.dir, uuid, cps)

	// /metrics shows each shard being read with its IteratorAge (the
	// poller's Lag).
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		resp, err := http.Get("http://" + e.addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, shard := range kids {
			if !regexp.MustCompile(`(?m)^esmd_iterator_age_milliseconds\{uuid="` + uuid + `",[^}]*lane="` + shard + `"\} \d+$`).Match(b) {
				return fmt.Errorf("no IteratorAge of shard %s in\n%s", shard, b)
			}
		}
		return nil
	})
}

// TestServeDynamoDBParallelizationFactor: ParallelizationFactor 1, 2 and
// 10 deliver every record once and each item's records in order.
func TestServeDynamoDBParallelizationFactor(t *testing.T) {
	e := newDDBEnv(t)
	for _, pf := range []int32{1, 2, 10} {
		t.Run(fmt.Sprint(pf), func(t *testing.T) {
			arn := e.stream(t, fmt.Sprintf("pf%d", pf), 2)
			want, _ := e.put(t, arn, keyed(2000, 40)...)
			e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(50),
				ParallelizationFactor: aws.Int32(pf)})
			e.fn.waitDelivered(t, arn, want)
			ds := e.fn.deliveries(arn)
			checkOnceInKeyOrder(t, ds)
			if len(ds) != len(want) {
				t.Errorf("%d deliveries of %d records", len(ds), len(want))
			}
		})
	}
}

// TestServeDynamoDBTumblingWindow: a window's records come in several
// invocations, each with the state the previous one returned, then one
// final invocation; a record of the next window closes it.
func TestServeDynamoDBTumblingWindow(t *testing.T) {
	e := newDDBEnv(t)
	arn := e.stream(t, "window", 1)
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	ws := make([]ddbWrite, 6)
	for i := range ws {
		ws[i] = ddbWrite{key: fmt.Sprint(i), created: start.Add(time.Duration(i) * time.Second)}
	}
	in, _ := e.put(t, arn, ws...)
	next, _ := e.put(t, arn, ddbWrite{key: "n", created: start.Add(time.Minute)})
	e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(2),
		TumblingWindowInSeconds: aws.Int32(60)})
	e.fn.waitDelivered(t, arn, append(in, next...))
	wantStart := start.UTC().Format("2006-01-02T15:04:05Z")
	var count, records int
	var final bool
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		count, records, final = 0, 0, false
		for _, ev := range e.fn.streamEvents(arn) {
			if ev.Window == nil {
				return fmt.Errorf("event without window: %s", ev.raw)
			}
			if ev.Window.Start != wantStart {
				continue
			}
			var st struct{ Count int }
			_ = json.Unmarshal(ev.State, &st)
			if st.Count != count {
				return fmt.Errorf("invocation got state count %d, want %d (the previous answer): %s", st.Count, count, ev.raw)
			}
			var resp struct{ State struct{ Count int } }
			if err := json.Unmarshal(ev.response, &resp); err != nil {
				return fmt.Errorf("response %s: %v", ev.response, err)
			}
			count = resp.State.Count
			records += len(ev.Records)
			if ev.Final {
				final = true
			}
		}
		if !final {
			return errors.New("no final invocation for the window yet")
		}
		return nil
	})
	if records != 6 || count != 6 {
		t.Errorf("window got %d records, state count %d; want 6 and 6", records, count)
	}
}

// TestServeDynamoDBFilter: FilterCriteria match the typed images (the
// "S" key is needed, as recorded); records filtered out are consumed: the
// checkpoint passes them.
func TestServeDynamoDBFilter(t *testing.T) {
	e := newDDBEnv(t)
	arn := e.stream(t, "filter", 1)
	uuid := e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(10),
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{
			{Pattern: aws.String(`{"eventName":["INSERT"],"dynamodb":{"NewImage":{"kind":{"S":["keep"]}}}}`)},
			{Pattern: aws.String(`{"dynamodb":{"NewImage":{"kind":["untyped"]}}}`)}, // never matches: the value is typed
		}}})
	bodies, as := e.put(t, arn, ddbWrite{key: "a", kind: "keep"}, ddbWrite{key: "b", kind: "drop"},
		ddbWrite{key: "c", kind: "untyped"}, ddbWrite{key: "d", kind: "keep"}, ddbWrite{key: "e", kind: "drop"})
	waitCheckpoints(t, e.dir, uuid, lastPerShard(as))
	var got []string
	for _, d := range e.fn.deliveries(arn) {
		got = append(got, d.body)
	}
	if want := []string{bodies[0], bodies[3]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

var (
	isoSeconds = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	isoMillis  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

// ddbFailure is the OnFailure record, member by member as recorded
// (test_dynamodb_event_source_mapping_with_on_failure_destination_config).
type ddbFailure struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext *struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	Version   string `json:"version"`
	Timestamp string `json:"timestamp"`
	Info      struct {
		ShardID             string `json:"shardId"`
		StartSequenceNumber string `json:"startSequenceNumber"`
		EndSequenceNumber   string `json:"endSequenceNumber"`
		FirstArrival        string `json:"approximateArrivalOfFirstRecord"`
		LastArrival         string `json:"approximateArrivalOfLastRecord"`
		BatchSize           int    `json:"batchSize"`
		StreamArn           string `json:"streamArn"`
	} `json:"DDBStreamBatchInfo"`
}

func receiveFailure(t *testing.T, sc *sqs.Client, qurl string) (ddbFailure, string) {
	t.Helper()
	var body string
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		m, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &qurl, WaitTimeSeconds: 1})
		if err != nil {
			return err
		}
		if len(m.Messages) == 0 {
			return errors.New("no OnFailure record yet")
		}
		body = aws.ToString(m.Messages[0].Body)
		_, err = sc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &qurl, ReceiptHandle: m.Messages[0].ReceiptHandle})
		return err
	})
	var rec ddbFailure
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatalf("OnFailure record %s: %v", body, err)
	}
	// Member order and presence as recorded.
	order := regexp.MustCompile(`^\{"requestContext":\{"requestId":"[^"]+","functionArn":"[^"]+","condition":"[A-Za-z]+","approximateInvokeCount":\d+\},` +
		`("responseContext":\{[^}]*\},)?"version":"1\.0","timestamp":"[^"]+","DDBStreamBatchInfo":\{"shardId":"[^"]+","startSequenceNumber":"\d+",` +
		`"endSequenceNumber":"\d+","approximateArrivalOfFirstRecord":"[^"]+","approximateArrivalOfLastRecord":"[^"]+","batchSize":\d+,"streamArn":"[^"]+"\}\}$`)
	if !order.MatchString(body) {
		t.Errorf("OnFailure record does not have the recorded shape: %s", body)
	}
	if !isoSeconds.MatchString(rec.Info.FirstArrival) || !isoSeconds.MatchString(rec.Info.LastArrival) || !isoMillis.MatchString(rec.Timestamp) {
		t.Errorf("timestamps: arrivals in whole seconds, timestamp in ms, as recorded: %s", body)
	}
	return rec, body
}

// TestServeDynamoDBFailures: the recorded OnFailure case (a function
// error, MaximumRetryAttempts 1: two invocations, then the record goes to
// the SQS destination with DDBStreamBatchInfo); a partial batch response
// retried from the failed item; records older than
// MaximumRecordAgeInSeconds discarded before any invocation.
func TestServeDynamoDBFailures(t *testing.T) {
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	e := newDDBEnv(t)

	t.Run("RetryAttemptsExhausted", func(t *testing.T) {
		qurl, qarn := sqsQueue(t, sc, "ddb-onfailure", nil)
		arn := e.stream(t, "fail", 1)
		e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(1),
			MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}})
		_, bad := e.put(t, arn, ddbWrite{key: "a", directive: `{"mode":"error"}`})
		rec, body := receiveFailure(t, sc, qurl)
		if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 ||
			rec.ResponseContext == nil || rec.ResponseContext.StatusCode != 200 || rec.ResponseContext.ExecutedVersion != "$LATEST" ||
			rec.ResponseContext.FunctionError != "Unhandled" ||
			rec.Info.ShardID != bad[0].ShardID || rec.Info.StartSequenceNumber != bad[0].SequenceNumber ||
			rec.Info.EndSequenceNumber != bad[0].SequenceNumber || rec.Info.BatchSize != 1 || rec.Info.StreamArn != arn {
			t.Errorf("OnFailure record: %s", body)
		}
		// The shard moves past the discarded record.
		ok, _ := e.put(t, arn, ddbWrite{key: "a"})
		e.fn.waitDelivered(t, arn, ok)
		if n := len(e.fn.deliveries(arn)); n != 3 {
			t.Errorf("%d deliveries, want 2 of the failing record and 1 of the next", n)
		}
	})

	t.Run("PartialBatchResponse", func(t *testing.T) {
		qurl, qarn := sqsQueue(t, sc, "ddb-partial", nil)
		arn := e.stream(t, "partial", 1)
		ws := keyed(5, 5)
		ws[2].directive = `{"mode":"fail-self"}`
		bodies, as := e.put(t, arn, ws...)
		e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(5),
			MaximumBatchingWindowInSeconds: aws.Int32(1),
			FunctionResponseTypes:          []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
			MaximumRetryAttempts:           aws.Int32(1), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}})
		rec, body := receiveFailure(t, sc, qurl)
		if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.Info.StartSequenceNumber != as[2].SequenceNumber ||
			rec.Info.EndSequenceNumber != as[4].SequenceNumber || rec.Info.BatchSize != 3 || rec.Info.StreamArn != arn {
			t.Errorf("OnFailure record: %s", body)
		}
		// First the whole batch, then from the failed item on: the items
		// before it are not invoked again.
		var got [][]string
		for _, ev := range e.fn.streamEvents(arn) {
			var bs []string
			for _, r := range ev.Records {
				bs = append(bs, r.Dynamodb.NewImage["body"].S)
			}
			got = append(got, bs)
		}
		want := [][]string{bodies, bodies[2:]}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("invocations %v, want %v", got, want)
		}
	})

	t.Run("RecordAgeExceeded", func(t *testing.T) {
		qurl, qarn := sqsQueue(t, sc, "ddb-age", nil)
		arn := e.stream(t, "age", 1)
		old := time.Now().Add(-5 * time.Minute)
		_, stale := e.put(t, arn, ddbWrite{key: "a", created: old}, ddbWrite{key: "b", created: old})
		fresh, _ := e.put(t, arn, ddbWrite{key: "a"})
		e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(10),
			MaximumRecordAgeInSeconds: aws.Int32(60), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}})
		rec, body := receiveFailure(t, sc, qurl)
		if rec.RequestContext.Condition != "RecordAgeExceeded" || rec.Info.StartSequenceNumber != stale[0].SequenceNumber ||
			rec.Info.EndSequenceNumber != stale[1].SequenceNumber || rec.Info.BatchSize != 2 ||
			rec.Info.FirstArrival != old.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z") {
			t.Errorf("OnFailure record: %s", body)
		}
		e.fn.waitDelivered(t, arn, fresh)
		ds := e.fn.deliveries(arn)
		sort.Slice(ds, func(i, j int) bool { return ds[i].body < ds[j].body })
		if len(ds) != 1 || ds[0].body != fresh[0] {
			t.Errorf("invoked with %v; over-age records must not be invoked", ds)
		}
	})
}

// ddbRecorder is kinesisRecorder for DynamoDB events: it records, per item
// key (pk), the numbers (NewImage n) of the records it is invoked with.
type ddbRecorder struct{ *kinesisRecorder }

// ddbNumbered is a DynamoDB Streams event of items with a string key pk
// and a number n.
type ddbNumbered struct {
	Records []struct {
		Dynamodb struct {
			Keys     map[string]struct{ S string }
			NewImage map[string]struct{ N string }
		} `json:"dynamodb"`
	}
}

func (r ddbRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var ev ddbNumbered
	if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Recorded on arrival: a batch in flight at a kill was delivered.
	r.mu.Lock()
	r.invokes++
	for _, e := range ev.Records {
		var n int
		if _, err := fmt.Sscan(e.Dynamodb.NewImage["n"].N, &n); err != nil {
			r.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k := e.Dynamodb.Keys["pk"].S
		r.byKey[k] = append(r.byKey[k], n)
	}
	r.mu.Unlock()
	time.Sleep(r.delay) // some work, so a kill finds batches in flight
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "null")
}

// TestDynamoDBSIGKILLRestart kills the esmd process (SIGKILL) while a
// DynamoDB Streams mapping is mid-stream and starts it again on the same
// data directory: every record reaches the function at least once, each
// item's records in order (one step back, to the checkpoint, at the
// restart), and the duplicates are bounded by the batches in flight when
// checkpoints are written before a batch is released (with coalesced
// checkpoints, the default, they are only reported).
func TestDynamoDBSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	s, err := ddbstreams.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", s.URL())
	bin := buildBinary(t)
	const shards, keys, perKey, batch = 2, 8, 60, 10
	for _, tc := range []struct {
		name     string
		pf       int32
		interval string
		maxDup   int // 0: not asserted
	}{
		{name: "PF1-sync", pf: 1, interval: "0s", maxDup: shards * batch},
		{name: "PF4-sync", pf: 4, interval: "0s", maxDup: shards * 2 * batch * 4},
		{name: "PF1-coalesced", pf: 1, interval: "100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "sigkill-" + tc.name, Shards: shards,
				KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}}})
			if err != nil {
				t.Fatal(err)
			}
			perShard := map[string]int{}
			for i := range perKey {
				for k := range keys {
					pk := &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("k%d", k)}
					a, err := s.Put(arn, ddbstreams.Change{EventName: ddbtypes.OperationTypeModify,
						Keys:     map[string]ddbtypes.AttributeValue{"pk": pk},
						NewImage: map[string]ddbtypes.AttributeValue{"pk": pk, "n": &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(i)}}})
					if err != nil {
						t.Fatal(err)
					}
					perShard[a.ShardID]++
				}
			}
			if len(perShard) != shards {
				t.Fatalf("items went to %d shards, want %d", len(perShard), shards)
			}
			rec := ddbRecorder{&kinesisRecorder{delay: 5 * time.Millisecond, byKey: map[string][]int{}}}
			fn := httptest.NewServer(rec)
			defer fn.Close()
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--lambda-endpoint", fn.URL, "--function-check", "never",
				"--dynamodb-checkpoint-interval", tc.interval}
			cmd, addr := startBinary(t, bin, args...)
			if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
				FunctionName: aws.String("function"), EventSourceArn: aws.String(arn),
				StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(batch),
				ParallelizationFactor: aws.Int32(tc.pf)}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, func(context.Context) error {
				if n, _ := rec.count(); n < 8 {
					return fmt.Errorf("%d invocations", n)
				}
				return nil
			})
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			_, before := rec.count()
			if before == keys*perKey {
				t.Fatal("every record was delivered before the kill; the test needs a slower function")
			}

			startBinary(t, bin, args...)
			testenv.Eventually(t, 60*time.Second, func(context.Context) error {
				if _, distinct := rec.count(); distinct != keys*perKey {
					return fmt.Errorf("%d of %d records delivered", distinct, keys*perKey)
				}
				return nil
			})
			total, distinct, err := rec.check(keys, perKey, 1)
			if err != nil {
				t.Fatal(err)
			}
			dup := total - distinct
			t.Logf("killed after %d of %d records; %d duplicate deliveries after the restart", before, distinct, dup)
			if tc.maxDup > 0 && dup > tc.maxDup {
				t.Fatalf("%d duplicate deliveries, want at most %d (the batches in flight)", dup, tc.maxDup)
			}
		})
	}
}
