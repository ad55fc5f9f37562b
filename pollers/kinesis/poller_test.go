package kinesis_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var streamSeq atomic.Int64

func client(t *testing.T) *awskinesis.Client {
	return awskinesis.NewFromConfig(testenv.AWSConfig(testenv.Kinesis(t)))
}

// newStream creates a stream with n shards and waits until it is ACTIVE;
// it returns the stream's name and ARN.
func newStream(t *testing.T, c *awskinesis.Client, shards int32) (string, string) {
	t.Helper()
	name := fmt.Sprintf("esmd-%s-%d-%d", strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), time.Now().UnixNano()%1e6, streamSeq.Add(1))
	if len(name) > 120 {
		name = name[len(name)-120:]
	}
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &awskinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	var arn string
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return err
		}
		if d.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			return fmt.Errorf("stream %s", d.StreamDescriptionSummary.StreamStatus)
		}
		arn = aws.ToString(d.StreamDescriptionSummary.StreamARN)
		return nil
	})
	t.Cleanup(func() {
		_, _ = c.DeleteStream(context.Background(), &awskinesis.DeleteStreamInput{StreamName: &name, EnforceConsumerDeletion: aws.Bool(true)})
	})
	return name, arn
}

func put(t *testing.T, c *awskinesis.Client, stream, key, body string) string {
	t.Helper()
	out, err := c.PutRecord(context.Background(), &awskinesis.PutRecordInput{StreamName: &stream, PartitionKey: &key, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.SequenceNumber)
}

type event struct {
	Kinesis struct {
		PartitionKey   string  `json:"partitionKey"`
		SequenceNumber string  `json:"sequenceNumber"`
		Data           string  `json:"data"`
		Arrival        float64 `json:"approximateArrivalTimestamp"`
	} `json:"kinesis"`
	EventID        string `json:"eventID"`
	EventSourceARN string `json:"eventSourceARN"`
	AWSRegion      string `json:"awsRegion"`
}

func body(t *testing.T, r source.Record) string {
	t.Helper()
	var e event
	if err := json.Unmarshal(r.Bytes(), &e); err != nil {
		t.Fatalf("record %s: %v", r.Bytes(), err)
	}
	b, err := base64.StdEncoding.DecodeString(e.Kinesis.Data)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func openStore(t *testing.T) *checkpoint.Store {
	t.Helper()
	st, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func open(t *testing.T, c *awskinesis.Client, cfg kinesis.Config) *kinesis.Poller {
	t.Helper()
	if cfg.Mapping == "" {
		cfg.Mapping = "mapping-1"
	}
	cfg.EmptyWait, cfg.MaxWait, cfg.ListInterval = 20*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond
	p, err := kinesis.New(context.Background(), c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestConformance(t *testing.T) {
	c := client(t)
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Ordered: true},
		Setup: func(t *testing.T) pollertest.Source {
			name, arn := newStream(t, c, 2)
			st := openStore(t)
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller {
					return open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
				},
				Produce: func(t *testing.T, key, b string) { put(t, c, name, key, b) },
				Body:    body,
			}
		},
	})
}

// pollN polls until n records arrived.
func pollN(t *testing.T, p source.Poller, n int, wait time.Duration) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []source.Record
	for len(out) < n {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

// pollNone checks that no record arrives during d: a negative check, so
// it takes all of d (the callers say why d is enough). A poller error
// fails it too.
func pollNone(t *testing.T, p source.Poller, d time.Duration) {
	t.Helper()
	testenv.Consistently(t, d, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, testenv.PollInterval)
		defer cancel()
		recs, err := p.Poll(pctx)
		if err != nil && pctx.Err() == nil {
			return fmt.Errorf("poll: %w", err)
		}
		// A Poll without records (a shard's end, source.LaneEnder) is not
		// a delivery.
		if len(recs) > 0 {
			return fmt.Errorf("unexpected records: %d, first %s", len(recs), recs[0].Bytes())
		}
		return nil
	})
}

// The record is the recorded shape: eventID shardId:seq, base64 data, float
// arrival, the stream ARN, the configured invokeIdentityArn.
func TestRecordShape(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	seq := put(t, c, name, "test_0", "hello")
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t)}, InvokeIdentityArn: "arn:aws:iam::000000000000:role/fn-role"})
	r := pollN(t, p, 1, 20*time.Second)[0]
	data := r.Bytes()
	if len(data) != r.Len() {
		t.Fatalf("record of %d bytes, Len %d", len(data), r.Len())
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	k := m["kinesis"].(map[string]any)
	ts, ok := k["approximateArrivalTimestamp"].(float64)
	if !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Fatalf("approximateArrivalTimestamp %v", k["approximateArrivalTimestamp"])
	}
	shard := "shardId-000000000000"
	arrival := strings.SplitN(strings.SplitN(string(data), `"approximateArrivalTimestamp":`, 2)[1], "}", 2)[0]
	if !strings.Contains(arrival, ".") || r.Arrival.Sub(time.UnixMilli(int64(ts*1000+0.5))).Abs() > time.Millisecond {
		t.Fatalf("approximateArrivalTimestamp %s is not the float seconds of %v", arrival, r.Arrival)
	}
	want := fmt.Sprintf(`{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"test_0","sequenceNumber":%q,"data":"aGVsbG8=","approximateArrivalTimestamp":%s},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"%s:%s","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::000000000000:role/fn-role","awsRegion":"us-east-1","eventSourceARN":%q}`,
		seq, arrival, shard, seq, arn)
	if string(data) != want {
		t.Fatalf("record\n got %s\nwant %s", data, want)
	}
	if r.Lane != shard || r.Key != "test_0" || r.ID != seq || r.Seq != seq || r.Arrival.IsZero() {
		t.Fatalf("record fields %+v", r)
	}
}

func TestRestartResumesAtCheckpoint(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	st := openStore(t)
	for i := range 10 {
		put(t, c, name, "k", fmt.Sprintf("r%02d", i))
	}
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	got := pollN(t, p, 10, 20*time.Second)
	// 0-3 and 5-6 done: the checkpoint stops at r03.
	var done []source.Record
	for i, r := range got {
		if i < 4 || i == 5 || i == 6 {
			done = append(done, r)
		}
	}
	if err := p.Done(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	if pos, _, _ := st.Position(context.Background(), "mapping-1", got[0].Lane); pos != got[3].Seq {
		t.Fatalf("checkpoint %q, want %q (r03)", pos, got[3].Seq)
	}
	p.Close()
	p = open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	again := pollN(t, p, 6, 20*time.Second)
	for i, r := range again[:6] {
		if want := fmt.Sprintf("r%02d", i+4); body(t, r) != want {
			t.Fatalf("after restart record %d is %s, want %s", i, body(t, r), want)
		}
	}
	// Nothing but r04-r09: the shard is read every 100 ms at most (open's
	// MaxWait), so any other record would come within 300 ms.
	pollNone(t, p, 300*time.Millisecond)
	// All done, restart again: nothing redelivered, new records come.
	if err := p.Done(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	p.Close()
	put(t, c, name, "k", "r10")
	p = open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	if b := body(t, pollN(t, p, 1, 20*time.Second)[0]); b != "r10" {
		t.Fatalf("after the second restart got %s, want r10", b)
	}
}

func TestStartingPositions(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	put(t, c, name, "k", "old-1")
	// Not a wait for the poller: AT_TIMESTAMP compares mid with the
	// server's millisecond arrival timestamps, so the clock must move
	// clearly past old-1 before mid, and past mid before old-2.
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	put(t, c, name, "k", "old-2")

	t.Run("TRIM_HORIZON", func(t *testing.T) {
		p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), StartingPosition: "TRIM_HORIZON"}})
		got := pollN(t, p, 2, 20*time.Second)
		if body(t, got[0]) != "old-1" || body(t, got[1]) != "old-2" {
			t.Fatalf("got %s, %s", body(t, got[0]), body(t, got[1]))
		}
	})
	t.Run("AT_TIMESTAMP", func(t *testing.T) {
		p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), StartingPosition: "AT_TIMESTAMP"}, Timestamp: mid})
		got := pollN(t, p, 1, 20*time.Second)
		if body(t, got[0]) != "old-2" {
			t.Fatalf("got %s, want old-2", body(t, got[0]))
		}
	})
	t.Run("LATEST", func(t *testing.T) {
		p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), StartingPosition: "LATEST"}})
		// The iterator is taken asynchronously: wait until the shard was read once.
		testenv.Eventually(t, 10*time.Second, func(context.Context) error {
			if _, ok := p.Lag()["shardId-000000000000"]; !ok {
				return fmt.Errorf("no read yet")
			}
			return nil
		})
		// The old records are not read: the shard is read every 100 ms
		// at most (open's MaxWait), so they would come within 300 ms.
		pollNone(t, p, 300*time.Millisecond)
		put(t, c, name, "k", "new-1")
		if b := body(t, pollN(t, p, 1, 20*time.Second)[0]); b != "new-1" {
			t.Fatalf("got %s, want new-1", b)
		}
	})
	t.Run("CheckpointWins", func(t *testing.T) {
		st := openStore(t)
		if err := st.SetPosition(context.Background(), "mapping-1", "shardId-000000000000", put(t, c, name, "k", "cp")); err != nil {
			t.Fatal(err)
		}
		put(t, c, name, "k", "after-cp")
		p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st, StartingPosition: "TRIM_HORIZON"}})
		if b := body(t, pollN(t, p, 1, 20*time.Second)[0]); b != "after-cp" {
			t.Fatalf("got %s, want after-cp", b)
		}
	})
}

func TestMissingStream(t *testing.T) {
	c := client(t)
	_, err := kinesis.New(context.Background(), c, kinesis.Config{Common: stream.Common{StreamARN: "arn:aws:kinesis:us-east-1:000000000000:stream/nope-esmd", Positions: openStore(t)}})
	if err == nil {
		t.Fatal("no error for a missing stream")
	}
	if !kinesis.IsStreamNotFound(err) {
		t.Fatalf("error %v is not stream-not-found", err)
	}
}

func TestStreamName(t *testing.T) {
	for _, tc := range []struct {
		arn, name, region string
		ok                bool
	}{
		{"arn:aws:kinesis:eu-west-1:123456789012:stream/s", "s", "eu-west-1", true},
		{"arn:aws:kinesis:eu-west-1:123456789012:stream/s/consumer/c:1700000000", "s", "eu-west-1", true},
		{"arn:aws:kinesis:eu-west-1:123456789012:stream/", "", "", false},
		{"arn:aws:kinesis:eu-west-1:123456789012:stream//consumer/c:1", "", "", false},
		{"arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/x", "", "", false},
		{"nra:aws:kinesis:eu-west-1:123456789012:stream/s", "", "", false},
		{"arn:aws:kinesis:eu-west-1:stream/s", "", "", false},
	} {
		name, region, err := kinesis.StreamName(tc.arn)
		if (err == nil) != tc.ok || name != tc.name || region != tc.region {
			t.Errorf("StreamName(%s) = %q %q %v", tc.arn, name, region, err)
		}
		if err != nil && err.Error() != fmt.Sprintf("kinesis: not a stream ARN: %q", tc.arn) {
			t.Errorf("StreamName(%s): error %q", tc.arn, err)
		}
	}
}
