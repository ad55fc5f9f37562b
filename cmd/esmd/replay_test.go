package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/internal/testenv"
)

// replayCLI runs esmd replay against a serve's API and returns its output.
func replayCLI(t *testing.T, addr, uuid, pos string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"replay", "--endpoint", "http://" + addr, uuid, pos}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("esmd replay %s %s: exit %d: %s", uuid, pos, code, stderr.String())
	}
	return stdout.String()
}

// waitEnabled waits until a mapping is Enabled.
func waitEnabled(t *testing.T, cl *lambda.Client, uuid string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		got, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: &uuid})
		if err == nil && aws.ToString(got.State) != "Enabled" {
			err = fmt.Errorf("state %s", aws.ToString(got.State))
		}
		return err
	})
}

// TestReplayKinesis rewinds a Kinesis mapping of a running serve with
// esmd replay: to a timestamp, every record that arrived at or after it is
// delivered again, in each shard's order, and none that arrived before it;
// to TRIM_HORIZON, everything again.
func TestReplayKinesis(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	fn := &fnRecorder{rie: testenv.RIE(t)}
	fsrv := httptest.NewServer(fn)
	defer fsrv.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = fsrv.URL
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)
	ctx := context.Background()

	name, arn := kinesisStream(t, kc, "replay", 2)
	shardOf := map[string]string{}
	put := func(prefix string) []string {
		var bodies []string
		for i := range 12 {
			b := fmt.Sprintf("%s-%02d", prefix, i)
			out, err := kc.PutRecord(ctx, &awskinesis.PutRecordInput{StreamName: &name,
				PartitionKey: aws.String(fmt.Sprintf("k%d", i%4)), Data: []byte(b)})
			if err != nil {
				t.Fatal(err)
			}
			shardOf[b] = aws.ToString(out.ShardId)
			bodies = append(bodies, b)
		}
		return bodies
	}
	before := put("before")
	// Not a wait for esmd: the timestamp must fall clearly between the
	// server's millisecond arrival timestamps of the two sets.
	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	time.Sleep(50 * time.Millisecond)
	after := put("after")

	out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	uuid := aws.ToString(out.UUID)
	delivered := func() []string {
		var bodies []string
		for _, call := range fn.of(arn) {
			for _, r := range call.Event.Records {
				bodies = append(bodies, string(r.Kinesis.Data))
			}
		}
		return bodies
	}
	waitFor := func(n int) []string {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			if got := len(delivered()); got < n {
				return fmt.Errorf("%d of %d records delivered", got, n)
			}
			return nil
		})
		return delivered()
	}
	all := append(slices.Clone(before), after...)
	first := waitFor(len(all))
	waitEnabled(t, cl, uuid)

	// checkReplayed checks that what was delivered again is want, each
	// shard's records in the order they were put.
	checkReplayed := func(got, want []string) {
		t.Helper()
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		wantSorted := slices.Clone(want)
		slices.Sort(wantSorted)
		if !slices.Equal(sorted, wantSorted) {
			t.Fatalf("delivered again %v, want %v", got, want)
		}
		for _, shard := range []string{shardOf[want[0]], shardOf[want[len(want)-1]]} {
			var g, w []string
			for _, b := range got {
				if shardOf[b] == shard {
					g = append(g, b)
				}
			}
			for _, b := range want {
				if shardOf[b] == shard {
					w = append(w, b)
				}
			}
			if !slices.Equal(g, w) {
				t.Errorf("shard %s delivered again %v, want %v in this order", shard, g, w)
			}
		}
	}

	if outText := replayCLI(t, addr, uuid, mid.UTC().Format(time.RFC3339Nano)); !strings.Contains(outText, "Enabled") {
		t.Errorf("esmd replay printed %q", outText)
	}
	again := waitFor(len(first) + len(after))
	checkReplayed(again[len(first):], after)

	replayCLI(t, addr, uuid, "TRIM_HORIZON")
	third := waitFor(len(again) + len(all))
	checkReplayed(third[len(again):], all)
	waitEnabled(t, cl, uuid)

	// LATEST: nothing written before is delivered again. Each shard's
	// iterator is taken when its reader starts, so records are put until
	// one arrives; what is delivered is a suffix of them.
	replayCLI(t, addr, uuid, "LATEST")
	var fresh []string
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if len(delivered()) > len(third) {
			return nil
		}
		b := fmt.Sprintf("new-%02d", len(fresh))
		if _, err := kc.PutRecord(ctx, &awskinesis.PutRecordInput{StreamName: &name, PartitionKey: aws.String("k0"), Data: []byte(b)}); err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, b)
		return fmt.Errorf("nothing delivered after LATEST yet")
	})
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if got := delivered(); got[len(got)-1] != fresh[len(fresh)-1] {
			return fmt.Errorf("waiting for %s after LATEST", fresh[len(fresh)-1])
		}
		return nil
	})
	if got := delivered()[len(third):]; !slices.Equal(got, fresh[len(fresh)-len(got):]) {
		t.Errorf("after LATEST delivered %v; put after the replay %v", got, fresh)
	}
}

// kafkaRecorder is an Invoke endpoint that records the Kafka records of
// every invocation, in order, as "partition/offset/value".
type kafkaRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (f *kafkaRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var ev events.KafkaEvent
	if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	for _, rs := range ev.Records {
		for _, r := range rs {
			v, _ := base64.StdEncoding.DecodeString(r.Value)
			f.recs = append(f.recs, fmt.Sprintf("%d/%d/%s", r.Partition, r.Offset, v))
		}
	}
	f.mu.Unlock()
	io.WriteString(w, "null")
}

func (f *kafkaRecorder) records() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.recs)
}

// TestReplayKafka rewinds a Kafka mapping of a running serve with esmd
// replay: to a time, the group's offsets move to the first record of each
// partition whose timestamp is at or after it, and exactly those records
// are delivered again, in each partition's order.
func TestReplayKafka(t *testing.T) {
	testenv.Skip(t)
	seeds := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kc, topic := newKafkaTopic(t, ctx, seeds, "replay")
	fn := &kafkaRecorder{}
	fsrv := httptest.NewServer(fn)
	defer fsrv.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = fsrv.URL
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)

	// Record timestamps are the producer's (CreateTime): an hour apart.
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	var wantAgain []string
	for set, ts := range []time.Time{base, base.Add(time.Hour)} {
		for i := range 4 {
			for pt := range int32(3) {
				v := fmt.Sprintf("set%d-p%d-%d", set, pt, i)
				recs = append(recs, &kgo.Record{Partition: pt, Value: []byte(v), Timestamp: ts})
				if set == 1 {
					wantAgain = append(wantAgain, fmt.Sprintf("%d/%d/%s", pt, 4+i, v))
				}
			}
		}
	}
	if err := kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")},
			{Type: types.SourceAccessTypeVpcSecurityGroup, URI: aws.String("security_group:sg-0123")}}})
	if err != nil {
		t.Fatal(err)
	}
	uuid := aws.ToString(out.UUID)
	waitFor := func(n int) []string {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			if got := len(fn.records()); got < n {
				return fmt.Errorf("%d of %d records delivered", got, n)
			}
			return nil
		})
		return fn.records()
	}
	first := waitFor(len(recs))
	waitEnabled(t, cl, uuid)

	replayCLI(t, addr, uuid, fmt.Sprint(base.Add(30*time.Minute).Unix()))
	again := waitFor(len(first) + len(wantAgain))[len(first):]
	sorted, want := slices.Clone(again), slices.Clone(wantAgain)
	slices.Sort(sorted)
	slices.Sort(want)
	if !slices.Equal(sorted, want) {
		t.Fatalf("delivered again %v, want %v", again, wantAgain)
	}
	for pt := range 3 {
		var got []string
		for _, r := range again {
			if strings.HasPrefix(r, fmt.Sprintf("%d/", pt)) {
				got = append(got, r)
			}
		}
		var w []string
		for _, r := range wantAgain {
			if strings.HasPrefix(r, fmt.Sprintf("%d/", pt)) {
				w = append(w, r)
			}
		}
		if !slices.Equal(got, w) {
			t.Errorf("partition %d delivered again %v, want %v in this order", pt, got, w)
		}
	}
	waitEnabled(t, cl, uuid)
}

// TestReplayRefusals checks the answers of the replay endpoint to what it
// cannot do: a queue, a mapping that does not exist, a body it cannot read.
func TestReplayRefusals(t *testing.T) {
	queue := localQueue(t)
	addr, stop := startServe(t, t.TempDir())
	defer stop()
	out, err := client(addr).CreateEventSourceMapping(context.Background(), &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(queue), Enabled: aws.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	post := func(id, body string) (int, string, string) {
		resp, err := http.Post("http://"+addr+replayPrefix+id+replaySuffix, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), string(b)
	}
	for _, tc := range []struct {
		id, body, typ, msg string
		status             int
	}{
		{aws.ToString(out.UUID), `{"Position":"TRIM_HORIZON"}`, "InvalidParameterValueException",
			"Replay is not supported for sqs event sources: a queue keeps no position to go back to", 400},
		{"00000000-0000-0000-0000-000000000000", `{"Position":"LATEST"}`, "ResourceNotFoundException", "The resource you requested does not exist.", 404},
		{aws.ToString(out.UUID), `{"Position":"AT_SEQUENCE_NUMBER"}`, "InvalidParameterValueException", "must be TRIM_HORIZON, LATEST or AT_TIMESTAMP", 400},
		{aws.ToString(out.UUID), `{"Position":"AT_TIMESTAMP"}`, "InvalidParameterValueException", "AT_TIMESTAMP needs a timestamp.", 400},
		{aws.ToString(out.UUID), `{"Position":"AT_TIMESTAMP","Timestamp":"yesterday"}`, "InvalidRequestContentException", "neither an RFC 3339 time nor Unix seconds", 400},
		{aws.ToString(out.UUID), `{"Posit":"LATEST"}`, "InvalidRequestContentException", "Could not parse request body into json", 400},
	} {
		status, typ, body := post(tc.id, tc.body)
		if status != tc.status || typ != tc.typ || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s %s, want %d %s %q", tc.body, status, typ, body, tc.status, tc.typ, tc.msg)
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"replay", "--endpoint", "http://" + addr, aws.ToString(out.UUID), "LATEST"}, nil, io.Discard, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "InvalidParameterValueException: Replay is not supported for sqs event sources") {
		t.Errorf("esmd replay of a queue: exit %d, %s", code, stderr.String())
	}
}

// TestReplayDynamoDB rewinds a DynamoDB Streams mapping to a time.
// DynamoDB Streams has no AT_TIMESTAMP iterator: esmd reads each shard
// from its oldest record and restarts at the first whose
// ApproximateCreationDateTime is at or after the time, so exactly the
// records created after it are delivered again, each key's in order.
func TestReplayDynamoDB(t *testing.T) {
	e := newDDBEnv(t)
	arn := e.stream(t, "replay", 2)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	write := func(at time.Time) []string {
		var ws []ddbWrite
		for i := range 12 {
			ws = append(ws, ddbWrite{key: fmt.Sprintf("k%d", i%4), created: at})
		}
		bodies, _ := e.put(t, arn, ws...)
		return bodies
	}
	before := write(base)
	after := write(base.Add(time.Hour))
	uuid := e.mapping(t, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(arn), BatchSize: aws.Int32(5)})
	e.fn.waitDelivered(t, arn, append(slices.Clone(before), after...))
	waitEnabled(t, e.cl, uuid)
	n0 := len(e.fn.deliveries(arn))

	replayCLI(t, e.addr, uuid, base.Add(30*time.Minute).Format(time.RFC3339))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if got := len(e.fn.deliveries(arn)) - n0; got < len(after) {
			return fmt.Errorf("%d of %d records delivered again", got, len(after))
		}
		return nil
	})
	again := e.fn.deliveries(arn)[n0:]
	var bodies []string
	for _, d := range again {
		bodies = append(bodies, d.body)
	}
	slices.Sort(bodies)
	if !slices.Equal(bodies, after) {
		t.Errorf("delivered again %v, want %v", bodies, after)
	}
	checkOnceInKeyOrder(t, again)
}

// TestReplayDocumentDB rewinds a DocumentDB mapping to a time: its change
// stream reopens with startAtOperationTime, and the events of that second
// and later are delivered again, in order.
func TestReplayDocumentDB(t *testing.T) {
	e := newDocDBE2E(t)
	c := e.coll(t, "replay")
	insertBodies(t, c, "before-0", "before-1", "before-2")
	// Not a wait for esmd: operation times are whole seconds, so the later
	// events must be written in a later second than the earlier ones.
	mid := time.Unix(time.Now().Unix()+1, 0)
	time.Sleep(time.Until(mid))
	insertBodies(t, c, "after-0", "after-1", "after-2", "after-3")
	id := e.create(t, "", c, nil)
	first := e.fn.wait(t, c, 7)
	waitEnabled(t, e.cl, id)

	replayCLI(t, e.addr, id, mid.UTC().Format(time.RFC3339))
	got := bodies(e.fn.wait(t, c, len(first)+4)[len(first):])
	if want := []string{"after-0", "after-1", "after-2", "after-3"}; !slices.Equal(got, want) {
		t.Errorf("delivered again %v, want %v", got, want)
	}
}
