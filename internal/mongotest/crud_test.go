package mongotest_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/internal/mongotest"
)

// TestCRUD drives the data commands through the driver's collection API.
func TestCRUD(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	cl := connect(t, s)
	coll := cl.Database("d").Collection("c")

	var docs []any
	for i := range 7 {
		docs = append(docs, bson.D{{Key: "_id", Value: int32(i)}, {Key: "g", Value: i % 2}, {Key: "tags", Value: bson.A{"t" + string(rune('a'+i))}}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	ids := func(filter any, opts ...options.Lister[options.FindOptions]) []int32 {
		t.Helper()
		cur, err := coll.Find(ctx, filter, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var out []struct {
			ID int32 `bson:"_id"`
		}
		if err := cur.All(ctx, &out); err != nil {
			t.Fatal(err)
		}
		var r []int32
		for _, d := range out {
			r = append(r, d.ID)
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		filter any
		opts   *options.FindOptionsBuilder
		want   []int32
	}{
		{"all in batches", bson.D{}, options.Find().SetBatchSize(2), []int32{0, 1, 2, 3, 4, 5, 6}},
		{"equality", bson.D{{Key: "g", Value: 1}}, nil, []int32{1, 3, 5}},
		{"numeric types meet", bson.D{{Key: "_id", Value: 2.0}}, nil, []int32{2}},
		{"array element", bson.D{{Key: "tags", Value: "tc"}}, nil, []int32{2}},
		{"range and sort", bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 2}, {Key: "$lt", Value: 5}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}), []int32{4, 3, 2}},
		{"in, skip, limit", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, 2, 3, 6}}}}}, options.Find().SetSkip(1).SetLimit(2), []int32{2, 3}},
		{"or", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "_id", Value: 0}}, bson.D{{Key: "_id", Value: 6}}}}}, nil, []int32{0, 6}},
		{"exists", bson.D{{Key: "nope", Value: bson.D{{Key: "$exists", Value: true}}}}, nil, nil},
	} {
		opts := tc.opts
		if opts == nil {
			opts = options.Find()
		}
		if got := ids(tc.filter, opts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: _ids %v, want %v", tc.name, got, tc.want)
		}
	}

	var one bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 3}}, options.FindOne().SetProjection(bson.D{{Key: "g", Value: 1}})).Decode(&one); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bson.M{"_id": int32(3), "g": int32(1)}, one); diff != "" {
		t.Errorf("projection (-want +got):\n%s", diff)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 99}}).Err(); err != mongo.ErrNoDocuments {
		t.Errorf("FindOne of nothing: %v", err)
	}

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); !mongo.IsDuplicateKeyError(err) {
		t.Errorf("duplicate _id: %v", err)
	}
	r, err := coll.UpdateMany(ctx, bson.D{{Key: "g", Value: 0}}, bson.D{{Key: "$set", Value: bson.D{{Key: "even", Value: true}}}})
	if err != nil || r.MatchedCount != 4 || r.ModifiedCount != 4 {
		t.Errorf("UpdateMany: %+v %v", r, err)
	}
	r, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "up"}}, bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "new", Value: true}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil || r.UpsertedID != "up" {
		t.Errorf("upsert: %+v %v", r, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "even", Value: true}}); err != nil || n != 4 {
		t.Errorf("CountDocuments: %d %v", n, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "none", Value: 1}}); err != nil || n != 0 {
		t.Errorf("CountDocuments of nothing: %d %v", n, err)
	}
	if n, err := coll.EstimatedDocumentCount(ctx); err != nil || n != 8 {
		t.Errorf("EstimatedDocumentCount: %d %v", n, err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 2}}}}); serverCode(err) != 66 {
		t.Errorf("changing _id: %v, want ImmutableField", err)
	}
	if d, err := coll.DeleteMany(ctx, bson.D{{Key: "g", Value: 1}}); err != nil || d.DeletedCount != 3 {
		t.Errorf("DeleteMany: %+v %v", d, err)
	}

	names, err := cl.Database("d").ListCollectionNames(ctx, bson.D{})
	if err != nil || !slices.Equal(names, []string{"c"}) {
		t.Errorf("ListCollectionNames: %v %v", names, err)
	}
	if err := cl.Database("d").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := coll.EstimatedDocumentCount(ctx); err != nil || n != 0 {
		t.Errorf("count after dropDatabase: %d %v", n, err)
	}
}

// TestUnsupported: what mongotest does not implement fails loudly.
func TestUnsupported(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	cl := connect(t, s)
	coll := cl.Database("d").Collection("c")
	mustInsert(t, ctx, coll, bson.D{{Key: "a", Value: "x"}})
	if _, err := coll.Find(ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$regex", Value: "x"}}}}); err == nil {
		t.Error("$regex accepted")
	}
	if _, err := coll.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$push", Value: bson.D{{Key: "l", Value: 1}}}}); err == nil {
		t.Error("$push accepted")
	}
	if _, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.WhenAvailable)); err == nil {
		t.Error("fullDocument whenAvailable accepted")
	}
	if err := cl.Database("d").RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}}).Err(); serverCode(err) != mongotest.CodeCommandNotFound {
		t.Errorf("collMod: %v, want CommandNotFound", err)
	}
}

// TestConfigureFailPoint: mongod's failCommand test command works through
// the driver, as other harnesses would use it.
func TestConfigureFailPoint(t *testing.T) {
	s := start(t, mongotest.Options{})
	ctx := testCtx(t)
	cl := connect(t, s, options.Client().SetRetryWrites(false))
	coll := cl.Database("d").Collection("c")
	err := cl.Database("admin").RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "errorCode", Value: 2}}},
	}).Err()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{}); serverCode(err) != 2 {
		t.Errorf("first insert: %v, want code 2", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{}); err != nil {
		t.Errorf("second insert: %v", err)
	}
	if st := s.Stats(); st.Commands["insert"] != 2 || st.Commands["configureFailPoint"] != 1 || st.TotalConns == 0 {
		t.Errorf("stats %+v", st)
	}
}
