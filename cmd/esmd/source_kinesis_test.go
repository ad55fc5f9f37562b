package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
	for i := range perKey {
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
