package ddbstreams_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/google/go-cmp/cmp"

	"github.com/esmd/esmd/internal/ddbstreams"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func start(t *testing.T, opts ...ddbstreams.Option) (*ddbstreams.Server, *dynamodbstreams.Client) {
	t.Helper()
	s, err := ddbstreams.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	c := dynamodbstreams.New(dynamodbstreams.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIAESMDTEST", "secret", ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   plainBody{&http.Client{}},
	})
	return s, c
}

// plainBody hides the request body's io.WriterTo from net/http, as
// pollers/dynamodbstreams does (see its plainBody): smithy-go's body answers
// WriteTo with io.EOF once closed, and net/http then closes the connection
// under the response of a server as fast as this one.
type plainBody struct{ *http.Client }

func (c plainBody) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = struct{ io.ReadCloser }{r.Body}
	}
	return c.Client.Do(r)
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}
}

func put(t *testing.T, s *ddbstreams.Server, arn string, c ddbstreams.Change) ddbstreams.Appended {
	t.Helper()
	a, err := s.Put(arn, c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func iter(t *testing.T, c *dynamodbstreams.Client, arn, shard string, typ types.ShardIteratorType, seq string) *string {
	t.Helper()
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: &arn, ShardId: &shard, ShardIteratorType: typ}
	if seq != "" {
		in.SequenceNumber = &seq
	}
	out, err := c.GetShardIterator(context.Background(), in)
	if err != nil {
		t.Fatalf("GetShardIterator %s: %v", typ, err)
	}
	return out.ShardIterator
}

func seqs(recs []types.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, *r.Dynamodb.SequenceNumber)
	}
	return out
}

func TestRecordsRoundTripThroughTheSDK(t *testing.T) {
	ck := &clock{t: time.Date(2026, 11, 25, 3, 0, 0, 700e6, time.UTC)}
	s, c := start(t, ddbstreams.WithClock(ck.now))
	ctx := context.Background()
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: "orders", ViewType: types.StreamViewTypeNewAndOldImages})
	if err != nil {
		t.Fatal(err)
	}
	if want := "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2026-11-25T03:00:00.700"; arn != want {
		t.Fatalf("arn = %s, want %s", arn, want)
	}
	img := map[string]types.AttributeValue{
		"id":   &types.AttributeValueMemberS{Value: "a<&>"},
		"n":    &types.AttributeValueMemberN{Value: "101"},
		"b":    &types.AttributeValueMemberB{Value: []byte("foobar")},
		"ok":   &types.AttributeValueMemberBOOL{Value: true},
		"nul":  &types.AttributeValueMemberNULL{Value: true},
		"ss":   &types.AttributeValueMemberSS{Value: []string{"x", "y"}},
		"ns":   &types.AttributeValueMemberNS{Value: []string{"1", "2.5"}},
		"bs":   &types.AttributeValueMemberBS{Value: [][]byte{[]byte("p"), []byte("q")}},
		"list": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "e"}}},
		"map":  &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberN{Value: "1"}}},
	}
	ins := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key("a<&>"), NewImage: img})
	ck.add(2 * time.Second)
	mod := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeModify, Keys: key("a<&>"), NewImage: key("a<&>"), OldImage: img})
	ttl := &types.Identity{PrincipalId: aws.String("dynamodb.amazonaws.com"), Type: aws.String("Service")}
	rem := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeRemove, Keys: key("a<&>"), OldImage: key("a<&>"), UserIdentity: ttl})

	out, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter(t, c, arn, ins.ShardID, types.ShardIteratorTypeTrimHorizon, "")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(out.Records), []string{ins.SequenceNumber, mod.SequenceNumber, rem.SequenceNumber}; !cmp.Equal(got, want) {
		t.Fatalf("sequence numbers %v, want %v", got, want)
	}
	r := out.Records[0]
	if *r.EventID != ins.EventID || r.EventName != types.OperationTypeInsert || *r.EventSource != "aws:dynamodb" || *r.EventVersion != "1.1" || *r.AwsRegion != "us-east-1" {
		t.Errorf("record metadata %+v", r)
	}
	if got, want := *r.Dynamodb.ApproximateCreationDateTime, time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("ApproximateCreationDateTime %v, want %v (rounded down to the second)", got, want)
	}
	if diff := cmp.Diff(img, r.Dynamodb.NewImage, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
		t.Errorf("NewImage (-put +read):\n%s", diff)
	}
	if r.Dynamodb.OldImage != nil || r.Dynamodb.StreamViewType != types.StreamViewTypeNewAndOldImages || *r.Dynamodb.SizeBytes <= 0 {
		t.Errorf("dynamodb %+v", r.Dynamodb)
	}
	if got := out.Records[1].Dynamodb; got.OldImage == nil || got.NewImage == nil || !got.ApproximateCreationDateTime.Equal(time.Date(2026, 11, 25, 3, 0, 2, 0, time.UTC)) {
		t.Errorf("MODIFY %+v", got)
	}
	if got := out.Records[2]; got.UserIdentity == nil || *got.UserIdentity.PrincipalId != "dynamodb.amazonaws.com" || *got.UserIdentity.Type != "Service" {
		t.Errorf("REMOVE userIdentity %+v", got.UserIdentity)
	}
	if out.NextShardIterator == nil {
		t.Error("open shard: NextShardIterator missing")
	}
}

func TestStreamViewTypeKeepsTheImagesItNames(t *testing.T) {
	for _, tc := range []struct {
		view           types.StreamViewType
		newImg, oldImg bool
	}{
		{types.StreamViewTypeKeysOnly, false, false},
		{types.StreamViewTypeNewImage, true, false},
		{types.StreamViewTypeOldImage, false, true},
		{types.StreamViewTypeNewAndOldImages, true, true},
	} {
		t.Run(string(tc.view), func(t *testing.T) {
			s, c := start(t)
			arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t", ViewType: tc.view})
			a := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeModify, Keys: key("k"), NewImage: key("k"), OldImage: key("k")})
			out, err := c.GetRecords(context.Background(), &dynamodbstreams.GetRecordsInput{ShardIterator: iter(t, c, arn, a.ShardID, types.ShardIteratorTypeTrimHorizon, "")})
			if err != nil {
				t.Fatal(err)
			}
			d := out.Records[0].Dynamodb
			if (d.NewImage != nil) != tc.newImg || (d.OldImage != nil) != tc.oldImg || d.StreamViewType != tc.view || d.Keys == nil {
				t.Errorf("NewImage %v OldImage %v view %s", d.NewImage, d.OldImage, d.StreamViewType)
			}
		})
	}
}

func TestShardIteratorTypes(t *testing.T) {
	s, c := start(t)
	ctx := context.Background()
	arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t"})
	var all []string
	var shard string
	for i := range 5 {
		a := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key(fmt.Sprint(i))})
		all = append(all, a.SequenceNumber)
		shard = a.ShardID
	}
	latest := iter(t, c, arn, shard, types.ShardIteratorTypeLatest, "")
	late := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key("late")})
	for _, tc := range []struct {
		name string
		it   *string
		want []string
	}{
		{"TRIM_HORIZON", iter(t, c, arn, shard, types.ShardIteratorTypeTrimHorizon, ""), append(all[:5:5], late.SequenceNumber)},
		{"LATEST", latest, []string{late.SequenceNumber}},
		{"AT_SEQUENCE_NUMBER", iter(t, c, arn, shard, types.ShardIteratorTypeAtSequenceNumber, all[3]), []string{all[3], all[4], late.SequenceNumber}},
		{"AFTER_SEQUENCE_NUMBER", iter(t, c, arn, shard, types.ShardIteratorTypeAfterSequenceNumber, all[3]), []string{all[4], late.SequenceNumber}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: tc.it})
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(out.Records); !cmp.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("Limit", func(t *testing.T) {
		it := iter(t, c, arn, shard, types.ShardIteratorTypeTrimHorizon, "")
		var got []string
		for range 3 {
			out, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(2)})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Records) != 2 {
				t.Fatalf("Limit 2 returned %d records", len(out.Records))
			}
			got = append(got, seqs(out.Records)...)
			it = out.NextShardIterator
		}
		if want := append(all[:5:5], late.SequenceNumber); !cmp.Equal(got, want) {
			t.Errorf("paged %v, want %v", got, want)
		}
		_, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1001)})
		if err == nil || !containsAll(err.Error(), "ValidationException", "less than or equal to 1000") {
			t.Errorf("Limit 1001: %v", err)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestNotFound(t *testing.T) {
	s, c := start(t)
	ctx := context.Background()
	arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t"})
	missing := "arn:aws:dynamodb:us-east-1:000000000000:table/nope/stream/2026-01-01T00:00:00.000"
	_, err := c.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: &missing})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || nf.ErrorMessage() != "Requested resource not found: Stream: "+missing+" not found" {
		t.Errorf("DescribeStream of a missing stream: %v", err)
	}
	_, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: &arn, ShardId: aws.String("shardId-nope"), ShardIteratorType: types.ShardIteratorTypeLatest})
	if !errors.As(err, &nf) || nf.ErrorMessage() != "Requested resource not found: Shard does not exist" {
		t.Errorf("GetShardIterator of a missing shard: %v", err)
	}
}

func TestDescribeStreamPagesAndLineage(t *testing.T) {
	s, c := start(t)
	ctx := context.Background()
	arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t", Shards: 2})
	ids, _ := s.Shards(arn)
	// Write keys until both shards have records, then split the first.
	perShard := map[string][]string{}
	for i := 0; len(perShard) < 2 || i < 20; i++ {
		a := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key(fmt.Sprint(i))})
		perShard[a.ShardID] = append(perShard[a.ShardID], a.SequenceNumber)
	}
	kids, err := s.Split(arn, ids[0], 2)
	if err != nil {
		t.Fatal(err)
	}
	var listed []types.Shard
	in := &dynamodbstreams.DescribeStreamInput{StreamArn: &arn, Limit: aws.Int32(1)}
	for pages := 0; ; pages++ {
		out, err := c.DescribeStream(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		d := out.StreamDescription
		if pages == 0 && (d.StreamStatus != types.StreamStatusEnabled || d.StreamViewType != types.StreamViewTypeNewAndOldImages ||
			*d.TableName != "t" || len(d.KeySchema) != 1 || *d.KeySchema[0].AttributeName != "id" || d.CreationRequestDateTime == nil) {
			t.Errorf("description %+v", d)
		}
		listed = append(listed, d.Shards...)
		if d.LastEvaluatedShardId == nil {
			break
		}
		in.ExclusiveStartShardId = d.LastEvaluatedShardId
	}
	if len(listed) != 4 {
		t.Fatalf("listed %d shards, want 4", len(listed))
	}
	p := listed[0]
	if *p.ShardId != ids[0] || p.SequenceNumberRange.EndingSequenceNumber == nil || *p.SequenceNumberRange.EndingSequenceNumber != perShard[ids[0]][len(perShard[ids[0]])-1] {
		t.Errorf("closed parent %+v", p)
	}
	if listed[1].SequenceNumberRange.EndingSequenceNumber != nil {
		t.Errorf("open shard has an EndingSequenceNumber")
	}
	for i, k := range kids {
		if *listed[2+i].ShardId != k || *listed[2+i].ParentShardId != ids[0] {
			t.Errorf("child %d: %+v", i, listed[2+i])
		}
	}
	out, err := c.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: &arn, ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeChildShards, ShardId: &ids[0]}})
	if err != nil || len(out.StreamDescription.Shards) != 2 {
		t.Errorf("CHILD_SHARDS: %v %v", err, out)
	}

	// The closed parent is read to its end: no NextShardIterator.
	it := iter(t, c, arn, ids[0], types.ShardIteratorTypeTrimHorizon, "")
	var got []string
	for it != nil {
		r, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(3)})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqs(r.Records)...)
		it = r.NextShardIterator
	}
	if !cmp.Equal(got, perShard[ids[0]]) {
		t.Errorf("parent read %v, want %v", got, perShard[ids[0]])
	}
	// One item's later changes go to one child.
	var where string
	for i := range 10 {
		a := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeModify, Keys: key("0")})
		if i > 0 && a.ShardID != where {
			t.Fatalf("key 0 moved from %s to %s", where, a.ShardID)
		}
		where = a.ShardID
	}
}

func TestListStreams(t *testing.T) {
	s, c := start(t)
	ctx := context.Background()
	var want []string
	for _, tb := range []string{"a", "b", "a"} {
		arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: tb})
		if err != nil {
			t.Fatal(err)
		}
		if tb == "a" {
			want = append(want, arn)
		}
	}
	var got []string
	in := &dynamodbstreams.ListStreamsInput{TableName: aws.String("a"), Limit: aws.Int32(1)}
	for {
		out, err := c.ListStreams(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range out.Streams {
			got = append(got, *st.StreamArn)
			if *st.TableName != "a" || st.StreamLabel == nil {
				t.Errorf("stream %+v", st)
			}
		}
		if out.LastEvaluatedStreamArn == nil {
			break
		}
		in.ExclusiveStartStreamArn = out.LastEvaluatedStreamArn
	}
	if !cmp.Equal(got, want) {
		t.Errorf("ListStreams a: %v, want %v", got, want)
	}
}

func TestIteratorsExpireAndTrimmedData(t *testing.T) {
	ck := &clock{t: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)}
	s, c := start(t, ddbstreams.WithClock(ck.now))
	ctx := context.Background()
	arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t"})
	old := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key("a")})
	it := iter(t, c, arn, old.ShardID, types.ShardIteratorTypeTrimHorizon, "")
	ck.add(ddbstreams.IteratorTTL + time.Second)
	_, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it})
	var ex *types.ExpiredIteratorException
	if !errors.As(err, &ex) {
		t.Errorf("iterator older than 15 minutes: %v", err)
	}
	fresh := put(t, s, arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key("a")})
	if err := s.Trim(arn, ck.now()); err != nil {
		t.Fatal(err)
	}
	var tr *types.TrimmedDataAccessException
	_, err = c.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: &arn, ShardId: &old.ShardID,
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: &old.SequenceNumber})
	if !errors.As(err, &tr) {
		t.Errorf("AT_SEQUENCE_NUMBER of a trimmed record: %v", err)
	}
	out, err := c.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter(t, c, arn, old.ShardID, types.ShardIteratorTypeTrimHorizon, "")})
	if err != nil || !cmp.Equal(seqs(out.Records), []string{fresh.SequenceNumber}) {
		t.Errorf("TRIM_HORIZON after a trim: %v %v", err, out)
	}
}

func TestFail(t *testing.T) {
	s, c := start(t)
	arn, _ := s.CreateStream(ddbstreams.StreamConfig{Table: "t"})
	s.Fail("DescribeStream", 1, "LimitExceededException", "slow down")
	_, err := c.DescribeStream(context.Background(), &dynamodbstreams.DescribeStreamInput{StreamArn: &arn})
	var le *types.LimitExceededException
	if !errors.As(err, &le) {
		t.Errorf("injected fault: %v", err)
	}
	if _, err := c.DescribeStream(context.Background(), &dynamodbstreams.DescribeStreamInput{StreamArn: &arn}); err != nil {
		t.Errorf("after the fault: %v", err)
	}
	if n := s.Calls("DescribeStream"); n != 2 {
		t.Errorf("Calls = %d", n)
	}
	if n := s.StreamCalls("DescribeStream", arn); n != 1 {
		t.Errorf("StreamCalls = %d (the failed call never reached the stream)", n)
	}
}
