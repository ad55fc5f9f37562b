package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/testenv"
)

// kinesisStream creates a stream on kinesis-local and returns its name and
// ARN once it is ACTIVE.
func kinesisStream(t *testing.T, c *awskinesis.Client, prefix string, shards int32) (string, string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	if _, err := c.CreateStream(context.Background(), &awskinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	var arn string
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return err
		}
		if d.StreamDescriptionSummary.StreamStatus != kintypes.StreamStatusActive {
			return fmt.Errorf("stream %s", d.StreamDescriptionSummary.StreamStatus)
		}
		arn = aws.ToString(d.StreamDescriptionSummary.StreamARN)
		return nil
	})
	return name, arn
}

// kinesisPut writes records and returns, per shard, the last sequence
// number written.
func kinesisPut(t *testing.T, c *awskinesis.Client, stream string, last map[string]string, bodies ...string) {
	t.Helper()
	for i, b := range bodies {
		out, err := c.PutRecord(context.Background(), &awskinesis.PutRecordInput{StreamName: &stream,
			PartitionKey: aws.String(fmt.Sprintf("k%d", i%5)), Data: []byte(b)})
		if err != nil {
			t.Fatal(err)
		}
		last[aws.ToString(out.ShardId)] = aws.ToString(out.SequenceNumber)
	}
}

// stores are the stores serve opened, by data directory (openedStore).
var (
	storesMu sync.Mutex
	stores   = map[string]*checkpoint.Store{}
)

func init() {
	openedStore = func(s *checkpoint.Store) {
		storesMu.Lock()
		defer storesMu.Unlock()
		stores[filepath.Dir(s.Path())] = s
	}
}

// waitCheckpoints waits until the mapping's checkpoint of every shard in
// want is the given sequence number: every record up to it was delivered.
func waitCheckpoints(t *testing.T, dir, uuid string, want map[string]string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		storesMu.Lock()
		st := stores[dir]
		storesMu.Unlock()
		if st == nil {
			return errors.New("no checkpoint store yet")
		}
		got, err := st.Positions(ctx, uuid)
		if err != nil {
			return err
		}
		for shard, seq := range want {
			if got[shard] != seq {
				return fmt.Errorf("shard %s checkpoint %q, want %q", shard, got[shard], seq)
			}
		}
		return nil
	})
}

// TestServeKinesisEndToEnd runs esmd serve on kinesis-local with testfn on
// RIE: a missing stream is refused with AWS's message; records of two
// shards are all delivered and checkpointed; a record that makes the
// function fail goes, after MaximumRetryAttempts, to the SQS OnFailure
// destination with its KinesisBatchInfo, and the shard moves past it; esmd
// restarted on the same directories resumes at the checkpoints.
func TestServeKinesisEndToEnd(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	ctx := context.Background()

	dir := t.TempDir()
	start := func() (*lambda.Client, func()) {
		c := newCommon("test", io.Discard, "127.0.0.1:0")
		c.dataDir = dir
		c.invokeMode = "rie"
		c.lambdaEndpoint = testenv.RIE(t)
		addr, stop := serveWith(t, c)
		return client(addr), stop
	}
	cl, stop := start()
	defer func() { stop() }()

	missing := "arn:aws:kinesis:us-east-1:000000000000:stream/esmd-no-such-stream"
	_, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(missing), StartingPosition: types.EventSourcePositionTrimHorizon})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" || ae.ErrorMessage() != "Stream not found: "+missing {
		t.Fatalf("create on a missing stream: %v", err)
	}

	name, arn := kinesisStream(t, kc, "e2e", 2)
	last := map[string]string{}
	var bodies []string
	for i := range 20 {
		bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
	}
	kinesisPut(t, kc, name, last, bodies...)
	out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 {
		t.Fatalf("records went to %d shards, want 2", len(last))
	}
	waitCheckpoints(t, dir, *out.UUID, last)

	// A failing record: retried once, then sent to the OnFailure queue.
	qurl, qarn := sqsQueue(t, sc, "kinesis-onfailure", nil)
	fname, farn := kinesisStream(t, kc, "e2e-fail", 1)
	fout, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(farn), StartingPosition: types.EventSourcePositionTrimHorizon,
		MaximumRetryAttempts: aws.Int32(1),
		DestinationConfig:    &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}})
	if err != nil {
		t.Fatal(err)
	}
	flast := map[string]string{}
	kinesisPut(t, kc, fname, flast, `{"testfn":{"mode":"error"}}`)
	failedSeq := flast["shardId-000000000000"]
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
		return nil
	})
	var rec struct {
		RequestContext struct {
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		Info struct {
			ShardID             string `json:"shardId"`
			StartSequenceNumber string `json:"startSequenceNumber"`
			EndSequenceNumber   string `json:"endSequenceNumber"`
			BatchSize           int    `json:"batchSize"`
			StreamArn           string `json:"streamArn"`
		} `json:"KinesisBatchInfo"`
	}
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 ||
		rec.Info.ShardID != "shardId-000000000000" || rec.Info.StartSequenceNumber != failedSeq ||
		rec.Info.EndSequenceNumber != failedSeq || rec.Info.BatchSize != 1 || rec.Info.StreamArn != farn {
		t.Errorf("OnFailure record: %s", body)
	}
	// The record routed to OnFailure is done: the shard moves past it.
	kinesisPut(t, kc, fname, flast, `{"after":"failure"}`)
	waitCheckpoints(t, dir, *fout.UUID, flast)

	// Restart on the same directories: the mapping resumes at its
	// checkpoints and delivers what came meanwhile.
	stop()
	kinesisPut(t, kc, name, last, `{"after":"restart-1"}`, `{"after":"restart-2"}`, `{"after":"restart-3"}`)
	cl, stop = start()
	if _, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoints(t, dir, *out.UUID, last)
}

// kinesisRecorder is a no-op function for the binary tests that records,
// per partition key, the numbers ({"n":N}) of the records it is invoked
// with, in invocation order.
type kinesisRecorder struct {
	delay   time.Duration
	mu      sync.Mutex
	byKey   map[string][]int
	invokes int
}

func (r *kinesisRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var ev events.KinesisEvent
	if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Recorded on arrival: a batch in flight at a kill was delivered.
	r.mu.Lock()
	r.invokes++
	for _, e := range ev.Records {
		var b struct{ N int }
		if err := json.Unmarshal(e.Kinesis.Data, &b); err != nil {
			r.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.byKey[e.Kinesis.PartitionKey] = append(r.byKey[e.Kinesis.PartitionKey], b.N)
	}
	r.mu.Unlock()
	time.Sleep(r.delay) // some work, so a kill finds batches in flight
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "null")
}

// check verifies, for keys 0..keys-1 with perKey records each, that every
// record was delivered and that each key's deliveries are in order with at
// most `restarts` steps back to an earlier record (a restart resuming at
// its checkpoint) and never a gap. It returns the deliveries in all and
// the distinct records delivered.
func (r *kinesisRecorder) check(keys, perKey, restarts int) (total, distinct int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		seq := r.byKey[key]
		seen := map[int]bool{}
		back := 0
		for i, n := range seq {
			seen[n] = true
			switch {
			case i == 0 && n != 0:
				return 0, 0, fmt.Errorf("key %s starts at %d", key, n)
			case i == 0 || n == seq[i-1]+1:
			case n <= seq[i-1]:
				back++
			default:
				return 0, 0, fmt.Errorf("key %s: %d after %d (a gap)", key, n, seq[i-1])
			}
		}
		if back > restarts {
			return 0, 0, fmt.Errorf("key %s went back %d times: %v", key, back, seq)
		}
		total += len(seq)
		distinct += len(seen)
	}
	return total, distinct, nil
}

func (r *kinesisRecorder) count() (invokes, distinct int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for k, ns := range r.byKey {
		for _, n := range ns {
			seen[fmt.Sprint(k, "/", n)] = true
		}
	}
	return r.invokes, len(seen)
}

// kinesisPutKeys writes perKey records {"n":i} for each of keys partition
// keys k0..k<keys-1>, in order per key.
func kinesisPutKeys(t *testing.T, c *awskinesis.Client, stream string, keys, perKey int) {
	t.Helper()
	kinesisPutRange(t, c, stream, keys, 0, perKey)
}

// kinesisPutRange writes records {"n":from}..{"n":to-1} for each of keys
// partition keys, in order per key.
func kinesisPutRange(t *testing.T, c *awskinesis.Client, stream string, keys, from, to int) {
	t.Helper()
	var entries []kintypes.PutRecordsRequestEntry
	flush := func() {
		if len(entries) == 0 {
			return
		}
		out, err := c.PutRecords(context.Background(), &awskinesis.PutRecordsInput{StreamName: &stream, Records: entries})
		if err != nil {
			t.Fatal(err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n > 0 {
			t.Fatalf("%d records not put", n)
		}
		entries = entries[:0]
	}
	for i := from; i < to; i++ {
		for k := range keys {
			entries = append(entries, kintypes.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("k%d", k)),
				Data: fmt.Appendf(nil, `{"n":%d}`, i)})
			if len(entries) == 500 {
				flush()
			}
		}
	}
	flush()
}

// TestKinesisSIGKILLRestart kills the esmd process (SIGKILL) while a
// Kinesis mapping is mid-stream and starts it again on the same data
// directory: every record reaches the function at least once, each key's
// records in order (one step back, to the checkpoint, at the restart),
// and the duplicates are bounded: with checkpoints written before a batch
// is released, by the batches in flight (one per shard, or per sub-lane
// with ParallelizationFactor, whose read-ahead is bounded to two batches
// per sub-lane); with coalesced checkpoints (the default) the bound grows
// by what was done in the last interval, so it is only reported.
func TestKinesisSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
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
			name, arn := kinesisStream(t, kc, "sigkill", shards)
			kinesisPutKeys(t, kc, name, keys, perKey)
			rec := &kinesisRecorder{delay: 5 * time.Millisecond, byKey: map[string][]int{}}
			fn := httptest.NewServer(rec)
			defer fn.Close()
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--lambda-endpoint", fn.URL, "--function-check", "never",
				"--kinesis-checkpoint-interval", tc.interval}
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

// kinesisCall is one invocation the function recorder saw.
type kinesisCall struct {
	Event    kinesisEvent
	Response string
}

// kinesisEvent is a Kinesis event, with the tumbling-window fields.
type kinesisEvent struct {
	Records []struct {
		EventSourceARN string `json:"eventSourceARN"`
		Kinesis        struct {
			PartitionKey   string  `json:"partitionKey"`
			SequenceNumber string  `json:"sequenceNumber"`
			Data           []byte  `json:"data"`
			Arrival        float64 `json:"approximateArrivalTimestamp"`
		} `json:"kinesis"`
	} `json:"Records"`
	Window *struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"window"`
	State          json.RawMessage `json:"state"`
	ShardID        string          `json:"shardId"`
	EventSourceARN string          `json:"eventSourceARN"`
	IsFinal        bool            `json:"isFinalInvokeForWindow"`
	IsEarly        bool            `json:"isWindowTerminatedEarly"`
}

func (e *kinesisEvent) arn() string {
	if len(e.Records) > 0 {
		return e.Records[0].EventSourceARN
	}
	return e.EventSourceARN
}

// fnRecorder stands between esmd and the function on RIE and records every
// invocation with the function's answer.
type fnRecorder struct {
	rie   string
	mu    sync.Mutex
	calls []kinesisCall
}

func (f *fnRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := http.Post(f.rie+req.URL.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ev kinesisEvent
	if err := json.Unmarshal(body, &ev); err == nil {
		f.mu.Lock()
		f.calls = append(f.calls, kinesisCall{Event: ev, Response: string(out)})
		f.mu.Unlock()
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// of returns the invocations for a stream.
func (f *fnRecorder) of(arn string) []kinesisCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kinesisCall
	for _, c := range f.calls {
		if c.Event.arn() == arn {
			out = append(out, c)
		}
	}
	return out
}

// agingProxy is kinesis-local seen through a proxy that makes records
// older: a record whose partition key is "age=N..." has its
// ApproximateArrivalTimestamp moved N seconds into the past in GetRecords
// answers. No emulator can backdate a record, and MaximumRecordAgeInSeconds
// is at least 60.
func agingProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway) // esmd cancels reads when it stops
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("X-Amz-Target") != "Kinesis_20131202.GetRecords" || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var m map[string]json.RawMessage
		var recs []map[string]json.RawMessage
		if json.Unmarshal(body, &m) == nil && json.Unmarshal(m["Records"], &recs) == nil {
			for _, r := range recs {
				var key string
				var ts float64
				json.Unmarshal(r["PartitionKey"], &key)
				var age int
				if _, err := fmt.Sscanf(key, "age=%d", &age); err == nil && json.Unmarshal(r["ApproximateArrivalTimestamp"], &ts) == nil {
					r["ApproximateArrivalTimestamp"] = json.RawMessage(strconv.FormatFloat(ts-float64(age), 'f', 3, 64))
				}
			}
			m["Records"], _ = json.Marshal(recs)
			body, _ = json.Marshal(m)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// onFailureRecord is the OnFailure record of a Kinesis mapping.
type onFailureRecord struct {
	RequestContext struct {
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext *struct {
		StatusCode    int     `json:"statusCode"`
		FunctionError *string `json:"functionError"`
	} `json:"responseContext"`
	Info struct {
		ShardID             string `json:"shardId"`
		StartSequenceNumber string `json:"startSequenceNumber"`
		EndSequenceNumber   string `json:"endSequenceNumber"`
		BatchSize           int    `json:"batchSize"`
		StreamArn           string `json:"streamArn"`
	} `json:"KinesisBatchInfo"`
}

// receiveOne waits for one message on an SQS queue and decodes it.
func receiveOne(t *testing.T, sc *sqs.Client, qurl string) onFailureRecord {
	t.Helper()
	var rec onFailureRecord
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		m, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &qurl, WaitTimeSeconds: 1})
		if err != nil {
			return err
		}
		if len(m.Messages) == 0 {
			return errors.New("no OnFailure record yet")
		}
		body := aws.ToString(m.Messages[0].Body)
		if err := json.Unmarshal([]byte(body), &rec); err != nil {
			return fmt.Errorf("OnFailure record %s: %w", body, err)
		}
		return nil
	})
	return rec
}

// TestServeKinesisScenarios runs mappings created through esmd serve's
// API on kinesis-local, with testfn on RIE behind a recorder and OnFailure
// destinations on fauxqs: the starting positions, the recorded partial
// batch response and record age cases, and tumbling windows.
func TestServeKinesisScenarios(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", agingProxy(t, ep))
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	fn := &fnRecorder{rie: testenv.RIE(t)}
	fsrv := httptest.NewServer(fn)
	defer fsrv.Close()
	dir := t.TempDir()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = dir
	c.invokeMode = "rie"
	c.lambdaEndpoint = fsrv.URL
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)
	ctx := context.Background()

	create := func(t *testing.T, arn string, in lambda.CreateEventSourceMappingInput) string {
		t.Helper()
		in.FunctionName, in.EventSourceArn = aws.String("function"), aws.String(arn)
		if in.StartingPosition == "" {
			in.StartingPosition = types.EventSourcePositionTrimHorizon
		}
		out, err := cl.CreateEventSourceMapping(ctx, &in)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: out.UUID}) })
		return *out.UUID
	}
	onFailure := func(t *testing.T) (string, *types.DestinationConfig) {
		qurl, qarn := sqsQueue(t, sc, "kinesis-scenario", nil)
		return qurl, &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(qarn)}}
	}
	put := func(t *testing.T, stream, key, body string) string {
		t.Helper()
		out, err := kc.PutRecord(ctx, &awskinesis.PutRecordInput{StreamName: &stream, PartitionKey: &key, Data: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.SequenceNumber)
	}
	bodiesOf := func(calls []kinesisCall) []string {
		var out []string
		for _, c := range calls {
			for _, r := range c.Event.Records {
				out = append(out, string(r.Kinesis.Data))
			}
		}
		return out
	}

	t.Run("StartingPositions", func(t *testing.T) {
		name, arn := kinesisStream(t, kc, "start", 1)
		put(t, name, "k", "old")
		// Not a wait for esmd: AT_TIMESTAMP compares mid with the
		// server's millisecond arrival timestamps, so the clock must move
		// clearly past "old" before mid, and past mid before "mid".
		time.Sleep(50 * time.Millisecond)
		mid := time.Now()
		time.Sleep(50 * time.Millisecond)
		put(t, name, "k", "mid")

		create(t, arn, lambda.CreateEventSourceMappingInput{StartingPosition: types.EventSourcePositionAtTimestamp,
			StartingPositionTimestamp: aws.Time(mid)})
		// LATEST: the iterator is taken when the shard is first read, so
		// records are put until one arrives; everything delivered must be
		// a suffix of what was put after the mapping was created.
		latestName, latestArn := kinesisStream(t, kc, "latest", 1)
		put(t, latestName, "k", "before")
		create(t, latestArn, lambda.CreateEventSourceMappingInput{StartingPosition: types.EventSourcePositionLatest})
		var after []string
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if len(fn.of(latestArn)) > 0 {
				return nil
			}
			b := fmt.Sprintf("after-%d", len(after))
			put(t, latestName, "k", b)
			after = append(after, b)
			return errors.New("nothing delivered yet")
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if got := bodiesOf(fn.of(latestArn)); got[len(got)-1] != after[len(after)-1] {
				return fmt.Errorf("LATEST delivered %v, waiting for %s", got, after[len(after)-1])
			}
			return nil
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if got := bodiesOf(fn.of(arn)); len(got) < 1 {
				return errors.New("AT_TIMESTAMP mapping delivered nothing yet")
			}
			return nil
		})
		if got := bodiesOf(fn.of(arn)); strings.Join(got, ",") != "mid" {
			t.Errorf("AT_TIMESTAMP delivered %v, want [mid]", got)
		}
		got := bodiesOf(fn.of(latestArn))
		if len(got) == 0 || slices.Contains(got, "before") || !slices.Equal(got, after[len(after)-len(got):]) {
			t.Errorf("LATEST delivered %v; put after creation %v", got, after)
		}
	})

	t.Run("PartialBatchResponse", func(t *testing.T) {
		// test_kinesis_report_batch_item_failures: BatchSize 3,
		// MaximumRetryAttempts 3, one of six records fails by partial
		// response: only it goes to OnFailure, after 4 invocations.
		name, arn := kinesisStream(t, kc, "partial", 1)
		qurl, dest := onFailure(t)
		last := map[string]string{}
		var failed string
		for i := range 6 {
			b := fmt.Sprintf(`{"n":%d}`, i)
			if i == 5 {
				b = `{"testfn":{"mode":"fail-self"}}`
			}
			seq := put(t, name, fmt.Sprintf("test_%d", i), b)
			last["shardId-000000000000"] = seq
			if i == 5 {
				failed = seq
			}
		}
		uuid := create(t, arn, lambda.CreateEventSourceMappingInput{BatchSize: aws.Int32(3), MaximumRetryAttempts: aws.Int32(3),
			FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures}, DestinationConfig: dest})
		rec := receiveOne(t, sc, qurl)
		if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 4 ||
			rec.ResponseContext == nil || rec.ResponseContext.StatusCode != 200 || rec.ResponseContext.FunctionError != nil ||
			rec.Info.BatchSize != 1 || rec.Info.StartSequenceNumber != failed || rec.Info.EndSequenceNumber != failed || rec.Info.StreamArn != arn {
			t.Errorf("OnFailure record %+v (response %+v)", rec, rec.ResponseContext)
		}
		waitCheckpoints(t, dir, uuid, last)
		// The second batch once, then three retries of its failed record.
		n := 0
		for _, c := range fn.of(arn) {
			for _, r := range c.Event.Records {
				if r.Kinesis.SequenceNumber == failed {
					n++
				}
			}
		}
		if n != 4 {
			t.Errorf("the failed record was invoked %d times, want 4", n)
		}
	})

	t.Run("ResponseScenarios", func(t *testing.T) {
		// test_kinesis_report_batch_item_{success,failure}_scenarios:
		// BatchSize 1, MaximumRetryAttempts 2, ReportBatchItemFailures.
		type scenario struct {
			name, directive string
			fail            bool
			functionError   *string
		}
		unhandled := "Unhandled"
		ret := func(body string) string { return `{"testfn":{"mode":"return","body":` + body + `}}` }
		scenarios := []scenario{
			{name: "empty_string_success", directive: ret(`""`)},
			{name: "empty_list_success", directive: ret(`[]`)},
			{name: "null_success", directive: ret(`null`)},
			{name: "empty_dict_success", directive: ret(`{}`)},
			{name: "empty_batch_item_failure_success", directive: ret(`{"batchItemFailures":[]}`)},
			{name: "null_batch_item_failure_success", directive: ret(`{"batchItemFailures":null}`)},
			{name: "empty_string_item_identifier_failure", directive: ret(`{"batchItemFailures":[{"itemIdentifier":""}]}`), fail: true},
			{name: "null_item_identifier_failure", directive: ret(`{"batchItemFailures":[{"itemIdentifier":null}]}`), fail: true},
			{name: "invalid_key_foo_failure", directive: ret(`{"batchItemFailures":[{"foo":"123"}]}`), fail: true},
			{name: "invalid_key_foo_null_value_failure", directive: ret(`{"batchItemFailures":[{"foo":null}]}`), fail: true},
			{name: "item_identifier_not_present_failure", directive: ret(`{"batchItemFailures":[{}]}`), fail: true},
			{name: "unhandled_exception_in_function", directive: `{"testfn":{"mode":"error"}}`, fail: true, functionError: &unhandled},
		}
		type running struct {
			arn, uuid, qurl string
			last            map[string]string
			seq             string
		}
		runs := make([]running, len(scenarios))
		for i, sc := range scenarios {
			name, arn := kinesisStream(t, kc, "scn", 1)
			qurl, dest := onFailure(t)
			seq := put(t, name, "test", sc.directive)
			// A second record after the first: the shard moves on in
			// every case (past a success, or past the OnFailure record).
			last := map[string]string{"shardId-000000000000": put(t, name, "test", `{"after":true}`)}
			uuid := create(t, arn, lambda.CreateEventSourceMappingInput{BatchSize: aws.Int32(1), MaximumRetryAttempts: aws.Int32(2),
				FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures}, DestinationConfig: dest})
			runs[i] = running{arn: arn, uuid: uuid, qurl: qurl, last: last, seq: seq}
		}
		for i, s := range scenarios {
			t.Run(s.name, func(t *testing.T) {
				r := runs[i]
				waitCheckpoints(t, dir, r.uuid, r.last)
				n := 0
				for _, c := range fn.of(r.arn) {
					if len(c.Event.Records) == 1 && c.Event.Records[0].Kinesis.SequenceNumber == r.seq {
						n++
					}
				}
				if !s.fail {
					if n != 1 {
						t.Errorf("the record was invoked %d times, want once (a success)", n)
					}
					m, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &r.qurl})
					if err != nil || len(m.Messages) != 0 {
						t.Errorf("OnFailure messages %v (%v) for a success", m, err)
					}
					return
				}
				if n != 3 {
					t.Errorf("the record was invoked %d times, want 3 (MaximumRetryAttempts 2)", n)
				}
				rec := receiveOne(t, sc, r.qurl)
				fe := rec.ResponseContext != nil && (rec.ResponseContext.FunctionError == nil) == (s.functionError == nil) &&
					(s.functionError == nil || *rec.ResponseContext.FunctionError == *s.functionError)
				if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 3 || !fe ||
					rec.ResponseContext.StatusCode != 200 || rec.Info.BatchSize != 1 || rec.Info.StartSequenceNumber != r.seq {
					t.Errorf("OnFailure record %+v (response %+v)", rec, rec.ResponseContext)
				}
			})
		}
	})

	t.Run("RecordAge", func(t *testing.T) {
		// test_kinesis_maximum_record_age_exceeded and
		// ..._discard_records, MaximumRecordAgeInSeconds 60.
		type ageCase struct {
			name      string
			retries   int32
			batch     int32
			keys      []string // partition keys ("age=N": N seconds old), in order
			bodies    []string
			discarded []int // indexes of the records in the OnFailure record
			invokes   func(int) bool
			delivered []int
		}
		cases := []ageCase{
			{name: "expire-before-ingestion", retries: 0, batch: 1, keys: []string{"age=120"}, bodies: []string{`{"n":0}`},
				discarded: []int{0}, invokes: func(n int) bool { return n == 1 }},
			{name: "expire-while-retrying", retries: -1, batch: 1, keys: []string{"age=57"}, bodies: []string{`{"testfn":{"mode":"error"}}`},
				discarded: []int{0}, invokes: func(n int) bool { return n > 1 }},
			{name: "discard_records", retries: 0, batch: 10, keys: []string{"age=120", "test", "test"},
				bodies: []string{"stream-data-0", "stream-data-1", "stream-data-2"}, discarded: []int{0}, invokes: func(n int) bool { return n == 1 },
				delivered: []int{1, 2}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				name, arn := kinesisStream(t, kc, "age", 1)
				qurl, dest := onFailure(t)
				var seqs []string
				for i, k := range tc.keys {
					seqs = append(seqs, put(t, name, k, tc.bodies[i]))
				}
				create(t, arn, lambda.CreateEventSourceMappingInput{BatchSize: aws.Int32(tc.batch), MaximumRetryAttempts: aws.Int32(tc.retries),
					MaximumRecordAgeInSeconds: aws.Int32(60), DestinationConfig: dest})
				rec := receiveOne(t, sc, qurl)
				first, lastSeq := seqs[tc.discarded[0]], seqs[tc.discarded[len(tc.discarded)-1]]
				if rec.RequestContext.Condition != "RecordAgeExceeded" || rec.ResponseContext != nil || !tc.invokes(rec.RequestContext.ApproximateInvokeCount) ||
					rec.Info.StartSequenceNumber != first || rec.Info.EndSequenceNumber != lastSeq || rec.Info.BatchSize != len(tc.discarded) {
					t.Errorf("OnFailure record %+v (responseContext %+v)", rec, rec.ResponseContext)
				}
				var want []string
				for _, i := range tc.delivered {
					want = append(want, tc.bodies[i])
				}
				testenv.Eventually(t, 20*time.Second, func(context.Context) error {
					var got []string
					for _, b := range bodiesOf(fn.of(arn)) {
						if !strings.Contains(b, "testfn") {
							got = append(got, b)
						}
					}
					if !slices.Equal(got, want) {
						return fmt.Errorf("delivered %v, want %v", got, want)
					}
					return nil
				})
				if tc.name == "expire-before-ingestion" && len(fn.of(arn)) != 0 {
					t.Errorf("the expired record reached the function")
				}
			})
		}
	})

	t.Run("TumblingWindow", func(t *testing.T) {
		// Records in 5 s windows, BatchSize 2: each invocation of a window
		// gets the state the previous one returned (testfn's window mode
		// counts records), a new window starts from {}, and the last
		// invocation of a window is marked final. The records are put at
		// once and aged by the proxy into windows 15 s apart, so each
		// window's end is known (a later window's records are buffered)
		// when its last batch is cut.
		name, arn := kinesisStream(t, kc, "window", 1)
		const w = `{"testfn":{"mode":"window"}}`
		for _, g := range []struct{ age, n int }{{45, 3}, {30, 3}, {15, 2}, {0, 1}} {
			for range g.n {
				put(t, name, fmt.Sprintf("age=%d", g.age), w)
			}
		}
		create(t, arn, lambda.CreateEventSourceMappingInput{BatchSize: aws.Int32(2), TumblingWindowInSeconds: aws.Int32(5)})
		var calls []kinesisCall
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			calls = fn.of(arn)
			finals, recs := 0, 0
			for _, c := range calls {
				if c.Event.IsFinal {
					finals++
				}
				recs += len(c.Event.Records)
			}
			if finals < 3 || recs < 9 {
				var b strings.Builder
				for _, c := range calls {
					fmt.Fprintf(&b, "\n  %d records window %+v state %s final %v -> %.200s", len(c.Event.Records), c.Event.Window, c.Event.State, c.Event.IsFinal, c.Response)
				}
				return fmt.Errorf("%d final invocations:%s", finals, b.String())
			}
			return nil
		})
		type win struct {
			count int  // records invoked so far in the window
			final bool // its final invocation was seen
		}
		wins := map[time.Time]*win{}
		total := 0
		for i, c := range calls {
			e := c.Event
			if e.Window == nil || e.ShardID != "shardId-000000000000" || e.EventSourceARN != arn || e.Window.End.Sub(e.Window.Start) != 5*time.Second {
				t.Fatalf("invocation %d: window %+v shard %q arn %q", i, e.Window, e.ShardID, e.EventSourceARN)
			}
			cur := wins[e.Window.Start]
			if cur == nil {
				cur = &win{}
				wins[e.Window.Start] = cur
			}
			if cur.final {
				t.Fatalf("invocation %d after the final one of window %v", i, e.Window.Start)
			}
			var st struct{ Count int }
			if len(e.State) > 0 {
				if err := json.Unmarshal(e.State, &st); err != nil {
					t.Fatalf("invocation %d state %s: %v", i, e.State, err)
				}
			}
			if st.Count != cur.count {
				t.Fatalf("invocation %d of window %v carries state %s, want count %d", i, e.Window.Start, e.State, cur.count)
			}
			for _, r := range e.Records {
				at := time.UnixMilli(int64(r.Kinesis.Arrival * 1000))
				if at.Before(e.Window.Start) || !at.Before(e.Window.End) {
					t.Fatalf("invocation %d: record of %v in window %v", i, at, e.Window.Start)
				}
			}
			cur.count += len(e.Records)
			total += len(e.Records)
			cur.final = e.IsFinal
			if e.IsEarly {
				t.Errorf("invocation %d terminated early", i)
			}
		}
		if total != 9 || len(wins) < 4 {
			t.Fatalf("%d records in %d windows, want 9 in at least 4", total, len(wins))
		}
		t.Logf("%d invocations over %d windows", len(calls), len(wins))
	})
}

// eventFrame encodes one event stream message (string headers only).
func eventFrame(headers [][2]string, payload []byte) []byte {
	var h bytes.Buffer
	for _, kv := range headers {
		h.WriteByte(byte(len(kv[0])))
		h.WriteString(kv[0])
		h.WriteByte(7) // string
		binary.Write(&h, binary.BigEndian, uint16(len(kv[1])))
		h.WriteString(kv[1])
	}
	total := 12 + h.Len() + len(payload) + 4
	buf := binary.BigEndian.AppendUint32(nil, uint32(total))
	buf = binary.BigEndian.AppendUint32(buf, uint32(h.Len()))
	buf = binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	buf = append(buf, h.Bytes()...)
	buf = append(buf, payload...)
	return binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
}

// efoProxy puts kinesis-local behind a proxy that counts calls by
// operation and completes SubscribeToShard with the initial-response event
// Kinesis sends first and kinesis-local omits (the SDK requires it).
func efoProxy(t *testing.T, target string) (string, func(op string) int) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	initial := eventFrame([][2]string{{":message-type", "event"}, {":event-type", "initial-response"}, {":content-type", "application/json"}}, []byte("{}"))
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		op := strings.TrimPrefix(resp.Request.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
		mu.Lock()
		calls[op]++
		mu.Unlock()
		if op == "SubscribeToShard" && resp.StatusCode == http.StatusOK {
			body := resp.Body
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(initial), body), body}
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL, func(op string) int { mu.Lock(); defer mu.Unlock(); return calls[op] }
}

// TestServeKinesisEnhancedFanOut creates a mapping on a registered stream
// consumer through the API: esmd reads with SubscribeToShard, never
// GetRecords, and every record reaches the function in order per key.
func TestServeKinesisEnhancedFanOut(t *testing.T) {
	testenv.Skip(t)
	ep, count := efoProxy(t, testenv.Kinesis(t))
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	ctx := context.Background()
	name, arn := kinesisStream(t, kc, "efo", 2)
	rc, err := kc.RegisterStreamConsumer(ctx, &awskinesis.RegisterStreamConsumerInput{StreamARN: &arn, ConsumerName: aws.String("esmd")})
	if err != nil {
		t.Fatal(err)
	}
	consumer := aws.ToString(rc.Consumer.ConsumerARN)
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := kc.DescribeStreamConsumer(ctx, &awskinesis.DescribeStreamConsumerInput{ConsumerARN: &consumer})
		if err != nil {
			return err
		}
		if s := d.ConsumerDescription.ConsumerStatus; s != kintypes.ConsumerStatusActive {
			return fmt.Errorf("consumer %s", s)
		}
		return nil
	})
	const keys, perKey = 4, 25
	kinesisPutKeys(t, kc, name, keys, perKey)
	rec := &kinesisRecorder{byKey: map[string][]int{}}
	fn := httptest.NewServer(rec)
	defer fn.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.lambdaEndpoint = fn.URL
	c.functionCheck = "never"
	addr, stop := serveWith(t, c)
	defer stop()
	if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(consumer), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if _, distinct := rec.count(); distinct != keys*perKey {
			return fmt.Errorf("%d of %d records delivered", distinct, keys*perKey)
		}
		return nil
	})
	if _, _, err := rec.check(keys, perKey, 0); err != nil {
		t.Fatal(err)
	}
	if n := count("SubscribeToShard"); n < 2 || count("GetRecords") != 0 {
		t.Fatalf("%d SubscribeToShard and %d GetRecords calls", n, count("GetRecords"))
	}
}

// waitStreamActive waits until a stream is ACTIVE again after a reshard.
func waitStreamActive(t *testing.T, c *awskinesis.Client, name string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return err
		}
		if s := d.StreamDescriptionSummary.StreamStatus; s != kintypes.StreamStatusActive {
			return fmt.Errorf("stream %s", s)
		}
		return nil
	})
}

// TestServeKinesisReshard splits a stream's shard and merges the children
// back while a mapping created through the API consumes it: every record
// reaches the function exactly once, in order per key across the lineage
// (parent, children, merged shard), and the closed shards end checkpointed
// at SHARD_END.
func TestServeKinesisReshard(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	ctx := context.Background()
	name, arn := kinesisStream(t, kc, "reshard", 1)
	const keys = 8
	kinesisPutRange(t, kc, name, keys, 0, 10)
	rec := &kinesisRecorder{delay: 2 * time.Millisecond, byKey: map[string][]int{}}
	fn := httptest.NewServer(rec)
	defer fn.Close()
	dir := t.TempDir()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = dir
	c.lambdaEndpoint = fn.URL
	c.functionCheck = "never"
	addr, stop := serveWith(t, c)
	defer stop()
	out, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5),
		ParallelizationFactor: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	delivered := func(n int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if _, d := rec.count(); d < n {
				return fmt.Errorf("%d of %d records delivered", d, n)
			}
			return nil
		})
	}
	delivered(1)
	parent := "shardId-000000000000"
	if _, err := kc.SplitShard(ctx, &awskinesis.SplitShardInput{StreamName: &name, ShardToSplit: &parent,
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")}); err != nil {
		t.Fatal(err)
	}
	waitStreamActive(t, kc, name)
	kinesisPutRange(t, kc, name, keys, 10, 20)
	ls, err := kc.ListShards(ctx, &awskinesis.ListShardsInput{StreamName: &name})
	if err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, s := range ls.Shards {
		if aws.ToString(s.ParentShardId) == parent {
			children = append(children, aws.ToString(s.ShardId))
		}
	}
	if len(children) != 2 {
		t.Fatalf("children %v", children)
	}
	delivered(keys * 11) // some of the children's records
	if _, err := kc.MergeShards(ctx, &awskinesis.MergeShardsInput{StreamName: &name, ShardToMerge: &children[0], AdjacentShardToMerge: &children[1]}); err != nil {
		t.Fatal(err)
	}
	waitStreamActive(t, kc, name)
	kinesisPutRange(t, kc, name, keys, 20, 30)
	delivered(keys * 30)
	total, distinct, err := rec.check(keys, 30, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != distinct {
		t.Fatalf("%d deliveries of %d records", total, distinct)
	}
	waitCheckpoints(t, dir, *out.UUID, map[string]string{parent: "SHARD_END", children[0]: "SHARD_END", children[1]: "SHARD_END"})

	// /metrics: an IteratorAge for the merged shard being read, none for
	// the finished ones.
	re := regexp.MustCompile(`(?m)^esmd_iterator_age_milliseconds\{uuid="` + *out.UUID + `",[^}]*lane="([^"]+)"\} \d+$`)
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		m := scrapeMetrics(t, addr)
		got := re.FindAllStringSubmatch(m, -1)
		if len(got) != 1 || got[0][1] == parent || got[0][1] == children[0] || got[0][1] == children[1] {
			return fmt.Errorf("IteratorAge lines %v in\n%s", got, m)
		}
		return nil
	})
}

// TestServeKinesisParallelizationFactor runs three mappings created
// through the API on one two-shard stream of 2,000 records, with
// ParallelizationFactor 1, 2 and 10, each invoking its own function: every
// record reaches each function exactly once, in order per partition key.
func TestServeKinesisParallelizationFactor(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	ctx := context.Background()
	name, arn := kinesisStream(t, kc, "pf", 2)
	const keys, perKey = 40, 50
	kinesisPutKeys(t, kc, name, keys, perKey)
	pfs := []int32{1, 2, 10}
	recs := map[string]*kinesisRecorder{}
	for _, pf := range pfs {
		recs[fmt.Sprintf("fn-pf%d", pf)] = &kinesisRecorder{delay: time.Millisecond, byKey: map[string][]int{}}
	}
	// /2015-03-31/functions/<name>/invocations
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		parts := strings.Split(req.URL.Path, "/")
		if len(parts) < 4 {
			http.Error(w, "no such function", http.StatusNotFound)
			return
		}
		name := parts[3] // a name or an ARN
		if i := strings.LastIndex(name, ":function:"); i >= 0 {
			name, _, _ = strings.Cut(name[i+len(":function:"):], ":")
		}
		if recs[name] == nil {
			http.Error(w, "no such function "+name, http.StatusNotFound)
			return
		}
		recs[name].ServeHTTP(w, req)
	}))
	defer fn.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.lambdaEndpoint = fn.URL
	c.functionCheck = "never"
	addr, stop := serveWith(t, c)
	defer stop()
	for _, pf := range pfs {
		if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
			FunctionName: aws.String(fmt.Sprintf("fn-pf%d", pf)), EventSourceArn: aws.String(arn),
			StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(20), ParallelizationFactor: aws.Int32(pf)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pf := range pfs {
		rec := recs[fmt.Sprintf("fn-pf%d", pf)]
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			if _, d := rec.count(); d != keys*perKey {
				return fmt.Errorf("PF %d: %d of %d records delivered", pf, d, keys*perKey)
			}
			return nil
		})
		total, distinct, err := rec.check(keys, perKey, 0)
		if err != nil {
			t.Fatalf("PF %d: %v", pf, err)
		}
		if total != distinct {
			t.Fatalf("PF %d: %d deliveries of %d records", pf, total, distinct)
		}
	}
}
