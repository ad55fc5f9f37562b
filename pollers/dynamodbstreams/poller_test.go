package dynamodbstreams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/ddbstreams"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server starts an in-repo DynamoDB Streams server for one test and a real
// SDK client on it.
func server(t testing.TB, opts ...ddbstreams.Option) (*ddbstreams.Server, *ddbs.Client) {
	t.Helper()
	s, err := ddbstreams.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The client esmd makes (NewClient), without SDK retries: the
	// poller's own backoff handles throttling.
	return s, dynamodbstreams.NewClient(testenv.AWSConfig(s.URL()), "", func(o *ddbs.Options) { o.Retryer = aws.NopRetryer{} })
}

func newStream(t *testing.T, s *ddbstreams.Server, shards int) string {
	t.Helper()
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "orders", ViewType: types.StreamViewTypeNewAndOldImages,
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	return arn
}

// put writes an INSERT of item pk with a body attribute.
func put(t *testing.T, s *ddbstreams.Server, arn, pk, body string) ddbstreams.Appended {
	t.Helper()
	keys := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}
	img := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "body": &types.AttributeValueMemberS{Value: body}}
	a, err := s.Put(arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: keys, NewImage: img})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// body reads the body attribute of a record's NewImage.
func body(t *testing.T, r source.Record) string {
	t.Helper()
	var e struct {
		Dynamodb struct {
			NewImage struct {
				Body struct{ S string } `json:"body"`
			}
		} `json:"dynamodb"`
	}
	if err := json.Unmarshal(r.Bytes(), &e); err != nil {
		t.Fatalf("record %s: %v", r.Bytes(), err)
	}
	return e.Dynamodb.NewImage.Body.S
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

func open(t *testing.T, c *ddbs.Client, cfg dynamodbstreams.Config) *dynamodbstreams.Poller {
	t.Helper()
	if cfg.Mapping == "" {
		cfg.Mapping = "mapping-1"
	}
	cfg.EmptyWait, cfg.MaxWait, cfg.ListInterval = 10*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	p, err := dynamodbstreams.New(context.Background(), c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pollN polls until n records came, failing after a generous deadline.
func pollN(t *testing.T, p source.Poller, n int) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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

func TestConformance(t *testing.T) {
	s, c := server(t)
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Ordered: true},
		Setup: func(t *testing.T) pollertest.Source {
			arn := newStream(t, s, 2)
			st := openStore(t)
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller {
					return open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
				},
				Produce: func(t *testing.T, key, b string) { put(t, s, arn, key, b) },
				Body:    body,
			}
		},
	})
}

// TestRecordShape checks the encoded record against the shape of the AWS
// recording test_dynamodb_event_source_mapping: member order, typed images
// (B in base64), whole-second ApproximateCreationDateTime. The server's
// SizeBytes for this item is the recorded 70.
func TestRecordShape(t *testing.T) {
	created := time.Date(2026, 11, 25, 3, 0, 1, 0, time.UTC)
	s, c := server(t, ddbstreams.WithClock(func() time.Time { return created.Add(400 * time.Millisecond) }))
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "t", ViewType: types.StreamViewTypeNewImage,
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("my_partition_key"), KeyType: types.KeyTypeHash}}})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]types.AttributeValue{"my_partition_key": &types.AttributeValueMemberS{Value: "hello world"}}
	img := map[string]types.AttributeValue{
		"my_partition_key": &types.AttributeValueMemberS{Value: "hello world"},
		"binary_key":       &types.AttributeValueMemberB{Value: []byte("foobar")},
	}
	a, err := s.Put(arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: keys, NewImage: img})
	if err != nil {
		t.Fatal(err)
	}
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t)}})
	r := pollN(t, p, 1)[0]
	want := `{"eventID":"` + a.EventID + `","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1",` +
		`"dynamodb":{"ApproximateCreationDateTime":1795575601,"Keys":{"my_partition_key":{"S":"hello world"}},` +
		`"NewImage":{"binary_key":{"B":"Zm9vYmFy"},"my_partition_key":{"S":"hello world"}},` +
		`"SequenceNumber":"` + a.SequenceNumber + `","SizeBytes":70,"StreamViewType":"NEW_IMAGE"},"eventSourceARN":"` + arn + `"}`
	if string(r.Bytes()) != want {
		t.Errorf("record\n got %s\nwant %s", r.Bytes(), want)
	}
	if r.Lane != a.ShardID || r.ID != a.SequenceNumber || r.Seq != a.SequenceNumber || !r.Arrival.Equal(created) ||
		r.Key != `{"my_partition_key":{"S":"hello world"}}` {
		t.Errorf("record fields %+v", r)
	}
}

// TestTTLDeleteAndLag: a TTL delete carries userIdentity, placed as in
// payload.AppendDynamoDB; Lag (IteratorAge) is the age of the last record
// read, DynamoDB Streams having no MillisBehindLatest.
func TestTTLDeleteAndLag(t *testing.T) {
	s, c := server(t)
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "t", ViewType: types.StreamViewTypeKeysOnly})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now().Add(-time.Hour).Truncate(time.Second)
	keys := map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "101"}}
	a, err := s.Put(arn, ddbstreams.Change{EventName: types.OperationTypeRemove, Keys: keys, Created: created,
		UserIdentity: &types.Identity{Type: aws.String("Service"), PrincipalId: aws.String("dynamodb.amazonaws.com")}})
	if err != nil {
		t.Fatal(err)
	}
	// MaxPending 1: with the record not done, the shard is not read
	// again, so no empty read (IteratorAge 0: caught up) comes before the
	// check below.
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), MaxPending: 1}})
	r := pollN(t, p, 1)[0]
	want := `{"eventID":"` + a.EventID + `","eventName":"REMOVE","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1",` +
		`"userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},` +
		`"dynamodb":{"ApproximateCreationDateTime":` + fmt.Sprint(created.Unix()) + `,"Keys":{"id":{"N":"101"}},` +
		`"SequenceNumber":"` + a.SequenceNumber + `","SizeBytes":4,"StreamViewType":"KEYS_ONLY"},"eventSourceARN":"` + arn + `"}`
	if string(r.Bytes()) != want {
		t.Errorf("record\n got %s\nwant %s", r.Bytes(), want)
	}
	if lag := p.Lag()[a.ShardID]; lag < 59*time.Minute {
		t.Errorf("Lag %v, want the age of the record (an hour)", lag)
	}
}

func TestAttributeValueEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    types.AttributeValue
		want string
	}{
		{"S", &types.AttributeValueMemberS{Value: "a\"<>\u2028"}, "{\"S\":\"a\\\"<>\u2028\"}"}, // as AWS: no HTML escaping, U+2028 raw
		{"N", &types.AttributeValueMemberN{Value: "-1.5E3"}, `{"N":"-1.5E3"}`},
		{"B", &types.AttributeValueMemberB{Value: []byte{0, 255}}, `{"B":"AP8="}`},
		{"BOOL", &types.AttributeValueMemberBOOL{Value: false}, `{"BOOL":false}`},
		{"NULL", &types.AttributeValueMemberNULL{Value: true}, `{"NULL":true}`},
		{"SS", &types.AttributeValueMemberSS{Value: []string{"x", "y"}}, `{"SS":["x","y"]}`},
		{"NS", &types.AttributeValueMemberNS{Value: []string{"1", "2"}}, `{"NS":["1","2"]}`},
		{"BS", &types.AttributeValueMemberBS{Value: [][]byte{[]byte("a"), []byte("b")}}, `{"BS":["YQ==","Yg=="]}`},
		{"L", &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberS{Value: "s"}}}, `{"L":[{"N":"1"},{"S":"s"}]}`},
		{"M", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"b": &types.AttributeValueMemberS{Value: "2"}, "a": &types.AttributeValueMemberS{Value: "1"}}}, `{"M":{"a":{"S":"1"},"b":{"S":"2"}}}`},
		{"empty M", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}, `{"M":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(dynamodbstreams.AppendAttributeValue(nil, tc.v))
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("invalid JSON %s", got)
			}
		})
	}
}

func TestStartingPositionAndCheckpointWins(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	put(t, s, arn, "k", "before")
	st := openStore(t)
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st, StartingPosition: "LATEST", Mapping: "latest"}})
	// LATEST: the reader's iterator is taken at its first read; wait
	// until the shard was read once before writing.
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if len(p.Lag()) == 0 {
			return fmt.Errorf("shard not read yet")
		}
		return nil
	})
	put(t, s, arn, "k", "after")
	got := pollN(t, p, 1)
	if b := body(t, got[0]); b != "after" || len(got) != 1 {
		t.Fatalf("LATEST delivered %q (%d records)", b, len(got))
	}
	if err := p.Done(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// A checkpoint wins over StartingPosition TRIM_HORIZON.
	put(t, s, arn, "k", "later")
	p = open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st, StartingPosition: "TRIM_HORIZON", Mapping: "latest"}})
	got = pollN(t, p, 1)
	if b := body(t, got[0]); b != "later" || len(got) != 1 {
		t.Fatalf("after the checkpoint: %q (%d records)", b, len(got))
	}
}

// TestSplitDuringConsumption splits a shard while the poller reads it:
// every record of the parent comes before any record of its children, no
// record is lost, each key keeps its order, and the parent is
// checkpointed at ShardEnd once all of it is done.
func TestSplitDuringConsumption(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	st := openStore(t)
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	const keys = 8
	n := 0
	write := func(count int) {
		for range count {
			put(t, s, arn, fmt.Sprintf("k%d", n%keys), fmt.Sprintf("%05d", n))
			n++
		}
	}
	write(100)
	got := pollN(t, p, 30)
	ids, _ := s.Shards(arn)
	parent := ids[0]
	kids, err := s.Split(arn, parent, 2)
	if err != nil {
		t.Fatal(err)
	}
	write(100)
	// Done as they come, so that the parent finishes and children start.
	if err := p.Done(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	for len(got) < n {
		more := pollN(t, p, 1)
		if err := p.Done(context.Background(), more); err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
	}
	seen := map[string]bool{}
	last := map[string]string{}
	childSeen := false
	for _, r := range got {
		b := body(t, r)
		if seen[b] {
			t.Errorf("record %s delivered twice", b)
		}
		seen[b] = true
		if r.Lane == parent && childSeen {
			t.Fatalf("parent record %s after a child record", b)
		}
		if r.Lane != parent {
			childSeen = true
			if r.Lane != kids[0] && r.Lane != kids[1] {
				t.Fatalf("record from unknown shard %s", r.Lane)
			}
		}
		if prev := last[r.Key]; b < prev {
			t.Fatalf("key %s: %s after %s", r.Key, b, prev)
		}
		last[r.Key] = b
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records, want %d", len(seen), n)
	}
	pos, ok, err := st.Position(context.Background(), "mapping-1", parent)
	if err != nil || !ok || pos != stream.ShardEnd {
		t.Errorf("parent checkpoint %q %v %v, want %s", pos, ok, err, stream.ShardEnd)
	}
}

// TestRestartAfterSplitResumesInChildren: a poller that finished the parent
// and is restarted reads only the children, from their checkpoints.
func TestRestartAfterSplitResumesInChildren(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	st := openStore(t)
	put(t, s, arn, "a", "1")
	ids, _ := s.Shards(arn)
	if _, err := s.Split(arn, ids[0], 1); err != nil { // rollover
		t.Fatal(err)
	}
	put(t, s, arn, "a", "2")
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	got := pollN(t, p, 1)
	if err := p.Done(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	got2 := pollN(t, p, 1)
	if body(t, got[0]) != "1" || body(t, got2[0]) != "2" {
		t.Fatalf("order %s %s", body(t, got[0]), body(t, got2[0]))
	}
	if err := p.Done(context.Background(), got2); err != nil {
		t.Fatal(err)
	}
	p.Close()
	put(t, s, arn, "a", "3")
	p = open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st, StartingPosition: "LATEST"}})
	got3 := pollN(t, p, 1)
	if len(got3) != 1 || body(t, got3[0]) != "3" {
		t.Fatalf("after restart: %d records, first %q", len(got3), body(t, got3[0]))
	}
}

// TestExpiredIteratorAndThrottling: an expired iterator is renewed after
// the last record read and a LimitExceededException is retried, with no
// record lost or repeated.
func TestExpiredIteratorAndThrottling(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), Limit: 5}})
	for i := range 10 {
		put(t, s, arn, "k", fmt.Sprintf("%02d", i))
	}
	got := pollN(t, p, 5)
	s.Fail("GetRecords", 1, "ExpiredIteratorException", "Iterator expired")
	s.Fail("GetRecords", 2, "LimitExceededException", "Rate exceeded")
	got = append(got, pollN(t, p, 10-len(got))...)
	for i, r := range got {
		if b := body(t, r); b != fmt.Sprintf("%02d", i) {
			t.Fatalf("record %d is %s", i, b)
		}
	}
}

// TestTrimmedCheckpointRestartsAtTrimHorizon: a checkpoint whose records
// were trimmed reads from the oldest record left.
func TestTrimmedCheckpointRestartsAtTrimHorizon(t *testing.T) {
	now := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, c := server(t, ddbstreams.WithClock(clock))
	arn := newStream(t, s, 1)
	st := openStore(t)
	first := put(t, s, arn, "k", "old")
	if err := st.SetPosition(context.Background(), "mapping-1", first.ShardID, first.SequenceNumber); err != nil {
		t.Fatal(err)
	}
	keys := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}
	img := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}, "body": &types.AttributeValueMemberS{Value: "new"}}
	if _, err := s.Put(arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: keys, NewImage: img, Created: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Trim(arn, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	if b := body(t, pollN(t, p, 1)[0]); b != "new" {
		t.Fatalf("got %s", b)
	}
}

func TestMissingStream(t *testing.T) {
	s, c := server(t)
	_ = s
	arn := "arn:aws:dynamodb:us-east-1:000000000000:table/none/stream/2026-01-01T00:00:00.000"
	_, err := dynamodbstreams.New(context.Background(), c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t)}})
	if !dynamodbstreams.IsStreamNotFound(err) || !strings.Contains(err.Error(), "Stream: "+arn+" not found") {
		t.Fatalf("New on a missing stream: %v", err)
	}
	if _, err := dynamodbstreams.New(context.Background(), c, dynamodbstreams.Config{Common: stream.Common{StreamARN: "arn:aws:kinesis:us-east-1:0:stream/x", Positions: openStore(t)}}); err == nil {
		t.Fatal("a Kinesis ARN was accepted")
	}
}

func TestParseARN(t *testing.T) {
	for _, tc := range []struct {
		arn, table, region string
		ok                 bool
	}{
		{"arn:aws:dynamodb:eu-west-1:123456789012:table/my-table/stream/2024-06-10T19:26:16.525", "my-table", "eu-west-1", true},
		{"arn:aws:dynamodb:eu-west-1:123456789012:table/my-table", "", "", false},
		{"arn:aws:kinesis:eu-west-1:123456789012:stream/s", "", "", false},
		{"arn:aws:dynamodb:eu-west-1:123456789012:table//stream/x", "", "", false},
		{"nra:aws:dynamodb:eu-west-1:123456789012:table/t/stream/x", "", "", false},
		{"arn:aws:dynamodb:eu-west-1:123456789012", "", "", false},
	} {
		table, region, err := dynamodbstreams.ParseARN(tc.arn)
		if (err == nil) != tc.ok || table != tc.table || region != tc.region {
			t.Errorf("ParseARN(%s) = %q %q %v", tc.arn, table, region, err)
		}
	}
}

// TestManyReadsThroughTheClient reads pages again and again with the
// client esmd makes: none may fail (see plainBody in poller.go; the SDK's
// own client fails about one read in ten to fifty against this server).
func TestManyReadsThroughTheClient(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	var shard string
	const n = 2000
	for i := range n {
		shard = put(t, s, arn, fmt.Sprint(i), strings.Repeat("x", 80)).ShardID
	}
	ctx := context.Background()
	for range 2 {
		it, err := c.GetShardIterator(ctx, &ddbs.GetShardIteratorInput{StreamArn: &arn, ShardId: &shard, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for got := 0; got < n; {
			out, err := c.GetRecords(ctx, &ddbs.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10)})
			if err != nil {
				t.Fatalf("after %d records: %v", got, err)
			}
			got += len(out.Records)
			iter = out.NextShardIterator
		}
	}
}

// TestRecordsEncodeOnDemand checks that records read through the SDK
// client take the raw route: no Data, an Encoder whose Size is exact.
func TestRecordsEncodeOnDemand(t *testing.T) {
	s, c := server(t)
	arn := newStream(t, s, 1)
	put(t, s, arn, "k1", "one")
	put(t, s, arn, "k2", "two \u00e9")
	p := open(t, c, dynamodbstreams.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t)}})
	for _, r := range pollN(t, p, 2) {
		if b := r.Bytes(); r.Data != nil || r.Encoder == nil || r.Len() != len(b) || !json.Valid(b) {
			t.Errorf("record %s: Data %q, Encoder %v, Len %d, encoded %d bytes: want encoded on demand with its exact Len",
				r.ID, r.Data, r.Encoder, r.Len(), len(b))
		}
	}
}
