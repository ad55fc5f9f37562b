package mongotest_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/internal/mongotest"
)

// event is a change event as esmd will decode it.
type event struct {
	ID struct {
		Data string `bson:"_data"`
	} `bson:"_id"`
	OperationType string         `bson:"operationType"`
	ClusterTime   bson.Timestamp `bson:"clusterTime"`
	WallTime      bson.DateTime  `bson:"wallTime"`
	NS            struct {
		DB   string `bson:"db"`
		Coll string `bson:"coll"`
	} `bson:"ns"`
	DocumentKey       bson.Raw `bson:"documentKey"`
	FullDocument      bson.Raw `bson:"fullDocument"`
	UpdateDescription *struct {
		UpdatedFields   bson.Raw `bson:"updatedFields"`
		RemovedFields   []string `bson:"removedFields"`
		TruncatedArrays bson.A   `bson:"truncatedArrays"`
	} `bson:"updateDescription"`
}

// next reads one event, failing the test if none comes.
func next(t *testing.T, ctx context.Context, cs *mongo.ChangeStream) (event, bson.Raw) {
	t.Helper()
	if !cs.Next(ctx) {
		t.Fatalf("no event: %v", cs.Err())
	}
	var ev event
	if err := cs.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	return ev, slices.Clone(cs.Current)
}

// noEvent checks that the stream is idle (one getMore).
func noEvent(t *testing.T, ctx context.Context, cs *mongo.ChangeStream) {
	t.Helper()
	if cs.TryNext(ctx) {
		t.Fatalf("unexpected event %s", cs.Current)
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
}

func watch(t *testing.T, ctx context.Context, w interface {
	Watch(context.Context, any, ...options.Lister[options.ChangeStreamOptions]) (*mongo.ChangeStream, error)
}, opts *options.ChangeStreamOptionsBuilder, pipeline ...bson.D) *mongo.ChangeStream {
	t.Helper()
	if opts == nil {
		opts = options.ChangeStream()
	}
	opts.SetMaxAwaitTime(100 * time.Millisecond)
	if pipeline == nil {
		pipeline = []bson.D{}
	}
	cs, err := w.Watch(ctx, pipeline, opts)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { cs.Close(context.Background()) })
	return cs
}

func intField(t *testing.T, d bson.Raw, key string) int32 {
	t.Helper()
	v, ok := d.Lookup(key).Int32OK()
	if !ok {
		t.Fatalf("%s: no int32 %s", d, key)
	}
	return v
}

// TestEventShapes checks insert, update, replace and delete events: order,
// fields and their order, documentKey, fullDocument, updateDescription,
// cluster times and increasing resume tokens.
func TestEventShapes(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("shop").Collection("orders")
	cs := watch(t, ctx, coll, nil)

	id := mustInsert(t, ctx, coll, bson.D{{Key: "qty", Value: 1}, {Key: "note", Value: "x"}, {Key: "addr", Value: bson.D{{Key: "city", Value: "Oslo"}}}})
	oid, ok := id.(bson.ObjectID)
	if !ok {
		t.Fatalf("generated _id %T, want an ObjectID", id)
	}
	byID := bson.D{{Key: "_id", Value: oid}}
	if _, err := coll.UpdateOne(ctx, byID, bson.D{
		{Key: "$set", Value: bson.D{{Key: "qty", Value: 2}, {Key: "addr.zip", Value: "0150"}}},
		{Key: "$unset", Value: bson.D{{Key: "note", Value: ""}}},
		{Key: "$inc", Value: bson.D{{Key: "n", Value: int32(5)}}},
	}); err != nil {
		t.Fatal(err)
	}
	// A no-op update writes no event.
	if r, err := coll.UpdateOne(ctx, byID, bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: 2}}}}); err != nil || r.MatchedCount != 1 || r.ModifiedCount != 0 {
		t.Fatalf("no-op update: %+v, %v", r, err)
	}
	if _, err := coll.ReplaceOne(ctx, byID, bson.D{{Key: "qty", Value: 9}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, byID); err != nil {
		t.Fatal(err)
	}

	key := bson.Raw(mustMarshal(t, byID))
	var last event
	for i, want := range []struct {
		op   string
		keys []string
	}{
		{"insert", []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey"}},
		{"update", []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey", "updateDescription"}},
		{"replace", []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey"}},
		{"delete", []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey"}},
	} {
		ev, raw := next(t, ctx, cs)
		if ev.OperationType != want.op {
			t.Fatalf("event %d: operationType %q, want %q", i, ev.OperationType, want.op)
		}
		if diff := cmp.Diff(want.keys, keys(t, raw)); diff != "" {
			t.Errorf("%s event fields (-want +got):\n%s", want.op, diff)
		}
		if ev.NS.DB != "shop" || ev.NS.Coll != "orders" {
			t.Errorf("%s: ns %+v", want.op, ev.NS)
		}
		if string(ev.DocumentKey) != string(key) {
			t.Errorf("%s: documentKey %s, want %s", want.op, ev.DocumentKey, key)
		}
		if ev.WallTime == 0 || time.Since(ev.WallTime.Time()) > time.Minute {
			t.Errorf("%s: wallTime %v", want.op, ev.WallTime.Time())
		}
		if cs.ResumeToken().Lookup("_data").StringValue() != ev.ID.Data {
			t.Errorf("%s: ResumeToken %s, want the event's _id %q", want.op, cs.ResumeToken(), ev.ID.Data)
		}
		if i > 0 && (!ev.ClusterTime.After(last.ClusterTime) || ev.ID.Data <= last.ID.Data) {
			t.Errorf("%s: clusterTime %v / token %s not after %v / %s", want.op, ev.ClusterTime, ev.ID.Data, last.ClusterTime, last.ID.Data)
		}
		switch want.op {
		case "insert":
			if got := ev.FullDocument.String(); got != `{"_id": {"$oid":"`+oid.Hex()+`"},"qty": {"$numberInt":"1"},"note": "x","addr": {"city": "Oslo"}}` {
				t.Errorf("insert fullDocument %s", got)
			}
		case "update":
			ud := ev.UpdateDescription
			if got := ud.UpdatedFields.String(); got != `{"qty": {"$numberInt":"2"},"addr.zip": "0150","n": {"$numberInt":"5"}}` {
				t.Errorf("updatedFields %s", got)
			}
			if !slices.Equal(ud.RemovedFields, []string{"note"}) || ud.TruncatedArrays == nil || len(ud.TruncatedArrays) != 0 {
				t.Errorf("removedFields %q, truncatedArrays %v", ud.RemovedFields, ud.TruncatedArrays)
			}
		case "replace":
			if got := ev.FullDocument.String(); got != `{"_id": {"$oid":"`+oid.Hex()+`"},"qty": {"$numberInt":"9"}}` {
				t.Errorf("replace fullDocument %s", got)
			}
		}
		last = ev
	}
	noEvent(t, ctx, cs)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFullDocument: default leaves fullDocument out of updates;
// updateLookup reads the document when the event is returned (its latest
// state), and null once it is deleted.
func TestFullDocument(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	def := watch(t, ctx, coll, options.ChangeStream().SetFullDocument(options.Default))
	lookup := watch(t, ctx, coll, options.ChangeStream().SetFullDocument(options.UpdateLookup))

	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}})
	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: 2}, {Key: "v", Value: 1}})
	for _, id := range []int{1, 2, 1} {
		if _, err := coll.UpdateByID(ctx, id, bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 5; i++ {
		ev, raw := next(t, ctx, def)
		if ev.OperationType == "update" {
			if _, err := raw.LookupErr("fullDocument"); err == nil {
				t.Errorf("default mode: update event has fullDocument: %s", raw)
			}
		}
	}
	// updateLookup: inserts carry the inserted document; updates the
	// document as it is now: {_id: 1, v: 3}, and null for deleted _id 2.
	want := []string{
		`{"_id": {"$numberInt":"1"},"v": {"$numberInt":"1"}}`,
		`{"_id": {"$numberInt":"2"},"v": {"$numberInt":"1"}}`,
		`{"_id": {"$numberInt":"1"},"v": {"$numberInt":"3"}}`,
		`null`,
		`{"_id": {"$numberInt":"1"},"v": {"$numberInt":"3"}}`,
	}
	for i, w := range want {
		_, raw := next(t, ctx, lookup)
		fd, err := raw.LookupErr("fullDocument")
		if err != nil {
			t.Fatalf("event %d has no fullDocument: %s", i, raw)
		}
		got := "null"
		if d, ok := fd.DocumentOK(); ok {
			got = d.String()
		}
		if got != w {
			t.Errorf("event %d fullDocument %s, want %s", i, got, w)
		}
	}
}

// TestDatabaseAndClusterStreams: a database stream sees every collection of
// its database (ns tells them apart), a cluster stream every database.
func TestDatabaseAndClusterStreams(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	cl := connect(t, s)
	dbs := watch(t, ctx, cl.Database("a"), nil)
	all := watch(t, ctx, cl, nil)

	mustInsert(t, ctx, cl.Database("a").Collection("x"), bson.D{{Key: "n", Value: 1}})
	mustInsert(t, ctx, cl.Database("b").Collection("x"), bson.D{{Key: "n", Value: 2}})
	mustInsert(t, ctx, cl.Database("a").Collection("y"), bson.D{{Key: "n", Value: 3}})

	for _, want := range []string{"a.x", "a.y"} {
		ev, _ := next(t, ctx, dbs)
		if got := ev.NS.DB + "." + ev.NS.Coll; got != want {
			t.Errorf("database stream: ns %s, want %s", got, want)
		}
	}
	noEvent(t, ctx, dbs)
	for _, want := range []string{"a.x", "b.x", "a.y"} {
		ev, _ := next(t, ctx, all)
		if got := ev.NS.DB + "." + ev.NS.Coll; got != want {
			t.Errorf("cluster stream: ns %s, want %s", got, want)
		}
	}
}

// TestResumeOptions: resumeAfter and startAfter continue right after the
// token's event, startAtOperationTime at the event with that time.
func TestResumeOptions(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs := watch(t, ctx, coll, nil)
	for i := range 4 {
		mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: int32(i)}})
	}
	var evs []event
	var tokens []bson.Raw
	for range 4 {
		ev, _ := next(t, ctx, cs)
		evs = append(evs, ev)
		tokens = append(tokens, slices.Clone(cs.ResumeToken()))
	}
	ids := func(cs *mongo.ChangeStream, n int) []int32 {
		var out []int32
		for range n {
			_, raw := next(t, ctx, cs)
			out = append(out, intField(t, raw.Lookup("documentKey").Document(), "_id"))
		}
		noEvent(t, ctx, cs)
		return out
	}
	for _, tc := range []struct {
		name string
		opts *options.ChangeStreamOptionsBuilder
		want []int32
	}{
		{"resumeAfter", options.ChangeStream().SetResumeAfter(tokens[1]), []int32{2, 3}},
		{"startAfter", options.ChangeStream().SetStartAfter(tokens[0]), []int32{1, 2, 3}},
		{"startAtOperationTime", options.ChangeStream().SetStartAtOperationTime(&evs[2].ClusterTime), []int32{2, 3}},
		{"resumeAfter last", options.ChangeStream().SetResumeAfter(tokens[3]), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(watch(t, ctx, coll, tc.opts), len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("got _ids %v, want %v", got, tc.want)
			}
		})
	}
	// A token from nothing mongotest made is refused.
	_, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(bson.D{{Key: "_data", Value: "8263EEB6E7000000092B022C0100296E5A1004"}}))
	if err == nil {
		t.Error("foreign resume token accepted")
	}
}

// TestInvalidate: dropping the collection ends its stream with drop and
// invalidate; resumeAfter refuses the invalidate token (260), startAfter
// takes it.
func TestInvalidate(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs := watch(t, ctx, coll, nil)
	mustInsert(t, ctx, coll, bson.D{{Key: "n", Value: 1}})
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insert", "drop", "invalidate"} {
		if ev, _ := next(t, ctx, cs); ev.OperationType != want {
			t.Fatalf("operationType %q, want %q", ev.OperationType, want)
		}
	}
	token := slices.Clone(cs.ResumeToken())
	if cs.Next(ctx) || cs.Err() != nil || cs.ID() != 0 {
		t.Fatalf("stream goes on after invalidate: id %d, err %v", cs.ID(), cs.Err())
	}
	_, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token))
	if serverCode(err) != mongotest.CodeInvalidResumeToken {
		t.Errorf("resumeAfter invalidate: %v, want code 260", err)
	}
	after := watch(t, ctx, coll, options.ChangeStream().SetStartAfter(token))
	// The driver resumes with resumeAfter and the initial
	// postBatchResumeToken, which must not be the invalidate token.
	s.InjectResumableError()
	aggs := s.CommandCount("aggregate")
	mustInsert(t, ctx, coll, bson.D{{Key: "n", Value: 2}})
	if ev, raw := next(t, ctx, after); ev.OperationType != "insert" || intField(t, ev.FullDocument, "n") != 2 {
		t.Errorf("startAfter invalidate: %s", raw)
	}
	if s.CommandCount("aggregate") != aggs+1 {
		t.Error("the stream did not resume")
	}
}

// TestMatchStage: a $match after $changeStream filters events, and the
// resume token still moves past what it filtered.
func TestMatchStage(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs := watch(t, ctx, coll, nil, bson.D{{Key: "$match", Value: bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "delete"}}}}}}})
	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: 1}})
	if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insert", "delete"} {
		if ev, _ := next(t, ctx, cs); ev.OperationType != want {
			t.Fatalf("operationType %q, want %q", ev.OperationType, want)
		}
	}
	before := cs.ResumeToken().Lookup("_data").StringValue()
	if _, err := coll.UpdateByID(ctx, 7, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(ctx, 7, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if ev, _ := next(t, ctx, cs); ev.OperationType != "insert" { // the upsert
		t.Fatalf("operationType %q, want insert", ev.OperationType)
	}
	noEvent(t, ctx, cs)
	if after := cs.ResumeToken().Lookup("_data").StringValue(); after <= before {
		t.Errorf("postBatchResumeToken %s did not pass the filtered update (before %s)", after, before)
	}
}

// TestLongPoll: an idle getMore waits maxTimeMS (MaxAwaitTime) and returns
// an empty batch with a newer postBatchResumeToken; a waiting getMore
// returns as soon as an event is written.
func TestLongPoll(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	initial := cs.ResumeToken().Lookup("_data").StringValue()
	mustInsert(t, ctx, connect(t, s).Database("other").Collection("c"), bson.D{})

	// The first TryNext only consumes the aggregate's empty first batch;
	// the second sends a getMore.
	if cs.TryNext(ctx) || cs.Err() != nil {
		t.Fatalf("TryNext: %v", cs.Err())
	}
	getMores := s.CommandCount("getMore")
	t0 := time.Now()
	if cs.TryNext(ctx) || cs.Err() != nil {
		t.Fatalf("TryNext: %v", cs.Err())
	}
	if n := s.CommandCount("getMore") - getMores; n != 1 {
		t.Errorf("TryNext sent %d getMores, want 1", n)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle getMore took %v, want about 300ms", d)
	}
	if pbrt := cs.ResumeToken().Lookup("_data").StringValue(); pbrt <= initial {
		t.Errorf("postBatchResumeToken %s not after the initial %s", pbrt, initial)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(100 * time.Millisecond)
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "late", Value: true}}); err != nil {
			t.Error(err)
		}
	}()
	defer wg.Wait()
	slow, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close(ctx)
	t0 = time.Now()
	if !slow.Next(ctx) {
		t.Fatal(slow.Err())
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("waiting getMore returned after %v, not at the insert", d)
	}
}

// TestAutoResume: after a getMore fails with a resumable error the driver
// resumes from its last token on its own: no event lost, none repeated.
// The same after the server drops every connection (a failover).
func TestAutoResume(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*mongotest.Server)
	}{
		{"resumable error", (*mongotest.Server).InjectResumableError},
		{"labelled error", func(s *mongotest.Server) { s.FailNextGetMore(10107, mongotest.ResumableChangeStreamError) }},
		{"cursor not found", func(s *mongotest.Server) { s.FailNextGetMore(mongotest.CodeCursorNotFound) }},
		{"connection closed", func(s *mongotest.Server) {
			s.SetFailPoint(mongotest.FailPoint{Commands: []string{"getMore"}, CloseConnection: true, Times: 1})
		}},
		// Idle pooled connections are dropped: the driver may notice before
		// its getMore, so whether it resumes is its business; no event
		// may be lost or repeated either way.
		{"connections dropped", func(s *mongotest.Server) { s.DropConnections() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, mongotest.Options{})
			ctx := testCtx(t)
			coll := connect(t, s).Database("d").Collection("c")
			cs := watch(t, ctx, coll, nil)
			n := int32(0)
			insert := func(k int) {
				for range k {
					mustInsert(t, ctx, coll, bson.D{{Key: "n", Value: n}})
					n++
				}
			}
			insert(3)
			var got []int32
			for range 3 {
				ev, _ := next(t, ctx, cs)
				got = append(got, intField(t, ev.FullDocument, "n"))
			}
			aggs, getMores := s.CommandCount("aggregate"), s.CommandCount("getMore")
			tc.inject(s)
			insert(3)
			for range 3 {
				ev, _ := next(t, ctx, cs)
				got = append(got, intField(t, ev.FullDocument, "n"))
			}
			noEvent(t, ctx, cs)
			if want := []int32{0, 1, 2, 3, 4, 5}; !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			if a := s.CommandCount("aggregate"); a != aggs+1 && tc.name != "connections dropped" {
				t.Errorf("%d aggregates after the failure, want 1 (the resume)", a-aggs)
			}
			if s.CommandCount("getMore") <= getMores {
				t.Error("no getMore failed")
			}
		})
	}
}

// TestHistoryLost: with a bounded log, opening a stream at a point whose
// later events are gone fails with 286, and so does an open stream whose
// position was trimmed; the driver does not resume from that.
func TestHistoryLost(t *testing.T) {
	s := start(t, mongotest.Options{MaxEvents: 3})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs := watch(t, ctx, coll, nil)
	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: 0}})
	first, _ := next(t, ctx, cs)
	firstToken := slices.Clone(cs.ResumeToken())
	for i := 1; i <= 5; i++ {
		mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: i}})
	}

	// The open stream last stood at event 0; 1 and 2 are gone.
	aggs := s.CommandCount("aggregate")
	if cs.Next(ctx) {
		t.Fatalf("event after history was lost: %s", cs.Current)
	}
	if serverCode(cs.Err()) != mongotest.CodeChangeStreamHistoryLost {
		t.Fatalf("Next error %v, want code 286", cs.Err())
	}
	if a := s.CommandCount("aggregate"); a != aggs {
		t.Errorf("the driver resumed (%d aggregates) after ChangeStreamHistoryLost", a-aggs)
	}

	for name, opts := range map[string]*options.ChangeStreamOptionsBuilder{
		"resumeAfter":          options.ChangeStream().SetResumeAfter(firstToken),
		"startAfter":           options.ChangeStream().SetStartAfter(firstToken),
		"startAtOperationTime": options.ChangeStream().SetStartAtOperationTime(&first.ClusterTime),
	} {
		if _, err := coll.Watch(ctx, mongo.Pipeline{}, opts); serverCode(err) != mongotest.CodeChangeStreamHistoryLost {
			t.Errorf("%s: Watch error %v, want code 286", name, err)
		}
	}

	// TRIM_HORIZON: the oldest retained event still works.
	oldest, ok := s.OldestRetained()
	if !ok {
		t.Fatal("OldestRetained: none")
	}
	horizon := watch(t, ctx, coll, options.ChangeStream().SetStartAtOperationTime(&oldest))
	for want := int32(3); want <= 5; want++ {
		if ev, raw := next(t, ctx, horizon); intField(t, ev.DocumentKey, "_id") != want {
			t.Fatalf("from the horizon: %s, want _id %d", raw, want)
		}
	}

	// TrimHistory ends every open stream.
	s.TrimHistory()
	if horizon.Next(ctx) || serverCode(horizon.Err()) != mongotest.CodeChangeStreamHistoryLost {
		t.Fatalf("after TrimHistory: Next error %v, want code 286", horizon.Err())
	}
	if _, ok := s.OldestRetained(); ok {
		t.Error("OldestRetained after TrimHistory")
	}
	fresh := watch(t, ctx, coll, nil)
	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: 6}})
	next(t, ctx, fresh)
}

// TestRetentionByAge: Options.Retention drops events older than the
// window; starting at now minus the window (TRIM_HORIZON on DocumentDB)
// works, an older start fails with 286.
func TestRetentionByAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := start(t, mongotest.Options{Retention: 10 * time.Second, Now: clock})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")

	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: "old"}})
	advance(5 * time.Second)
	mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: "new"}})
	oldTS, _ := s.OldestRetained()
	advance(6 * time.Second)
	newTS, ok := s.OldestRetained()
	if !ok || !newTS.After(oldTS) {
		t.Fatalf("OldestRetained %v, %v after the window passed the first event (%v)", newTS, ok, oldTS)
	}
	if _, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&oldTS)); serverCode(err) != mongotest.CodeChangeStreamHistoryLost {
		t.Errorf("start at the trimmed event: %v, want code 286", err)
	}
	horizon := bson.Timestamp{T: uint32(clock().Add(-10 * time.Second).Unix())}
	cs := watch(t, ctx, coll, options.ChangeStream().SetStartAtOperationTime(&horizon))
	if ev, raw := next(t, ctx, cs); ev.DocumentKey.Lookup("_id").StringValue() != "new" {
		t.Errorf("from now-retention: %s", raw)
	}
}

// TestTLS: Options.TLS serves TLS that ClientTLSConfig trusts.
func TestTLS(t *testing.T) {
	s := start(t, mongotest.Options{TLS: true})
	ctx := testCtx(t)
	cl := connect(t, s, options.Client().SetTLSConfig(s.ClientTLSConfig()))
	coll := cl.Database("d").Collection("c")
	cs := watch(t, ctx, coll, nil)
	mustInsert(t, ctx, coll, bson.D{{Key: "a", Value: 1}})
	next(t, ctx, cs)
	if len(s.CACert()) == 0 {
		t.Error("no CA certificate")
	}
}

// TestLargeEvents: events of several MB (DocumentDB's Lambda limit is
// 6 MB) come through, split into replies under 16 MB.
func TestLargeEvents(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	coll := connect(t, s).Database("d").Collection("c")
	cs := watch(t, ctx, coll, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	big := strings.Repeat("x", 7<<20)
	for i := range 3 {
		mustInsert(t, ctx, coll, bson.D{{Key: "_id", Value: int32(i)}, {Key: "blob", Value: big}})
	}
	if _, err := coll.UpdateByID(ctx, 0, bson.D{{Key: "$set", Value: bson.D{{Key: "small", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		_, raw := next(t, ctx, cs)
		if len(raw) < 7<<20 {
			t.Errorf("event %d is %d bytes", i, len(raw))
		}
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "blob", Value: strings.Repeat("x", 17<<20)}}); serverCode(err) != 2 {
		t.Errorf("a document over 16 MiB: %v, want mongod's BadValue", err)
	}
	// An update that makes a change event over 16 MiB (a 9 MB document
	// twice: updatedFields and the looked-up fullDocument) fails the
	// stream with BSONObjectTooLarge, as on mongod.
	if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "blob", Value: big + strings.Repeat("y", 2<<20)}}}}); err != nil {
		t.Fatal(err)
	}
	if cs.Next(ctx) || serverCode(cs.Err()) != 10334 {
		t.Errorf("event over 16 MiB: %v, want code 10334", cs.Err())
	}
}
