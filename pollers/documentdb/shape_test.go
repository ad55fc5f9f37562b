package documentdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

// awsExample is spec 1.8's event, AWS's documented example, as the
// payload package's golden file holds it.
func awsExample(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "payload", "documentdb.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	decodeJSON(t, b, &v)
	return v
}

// changes writes an insert, an update, a replace and a delete to
// test_database.test_collection of a server of its own, and returns the
// records a poller read (FullDocument UpdateLookup when lookup) and the
// change events a plain driver change stream read, raw.
func changes(t *testing.T, lookup bool) ([]source.Record, []bson.Raw) {
	t.Helper()
	s := private(t, mongotest.Options{})
	c := client(t, s).Database("test_database").Collection("test_collection")
	ctx := context.Background()
	res, err := c.InsertOne(ctx, bson.D{{Key: "anyField", Value: "sampleValue"}, {Key: "n", Value: int32(1)}, {Key: "x", Value: 2.5}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.InsertedID
	steps := []func() error{
		func() error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int32(2)}}}, {Key: "$unset", Value: bson.D{{Key: "x", Value: ""}}}})
			return err
		},
		func() error {
			_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "anyField", Value: "replaced"}})
			return err
		},
		func() error { _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config(s, openStore(t), "")
	cfg.Database = "test_database"
	if lookup {
		cfg.FullDocument = "UpdateLookup"
	}
	recs := pollN(t, open(t, cfg), 4, 10*time.Second)

	o := options.ChangeStream().SetStartAtOperationTime(&bson.Timestamp{T: 1})
	if lookup {
		o.SetFullDocument(options.UpdateLookup)
	}
	cs, err := c.Database().Watch(ctx, mongo.Pipeline{}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	var raw []bson.Raw
	for len(raw) < 4 && cs.Next(ctx) {
		raw = append(raw, slices.Clone(cs.Current))
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
	return recs, raw
}

// TestEventShapeAsAWSExample checks an insert's event, in its envelope,
// field by field against AWS's documented example (spec 1.8): the same
// members with the same JSON types, the same extended JSON forms
// ($timestamp, $oid), and the same values where the example's are not
// the cluster's own (ns, operationType, the document's field).
func TestEventShapeAsAWSExample(t *testing.T) {
	recs, _ := changes(t, false)
	env := payload.DocumentDB("arn:aws:rds:us-east-1:123456789012:cluster:canaryclusterb2a659a2-qo5tcmqkcl03")
	var got map[string]any
	decodeJSON(t, env.Append(nil, "", [][]byte{recs[0].Data}), &got)
	want := awsExample(t)

	if keys(got) != keys(want) || got["eventSource"] != "aws:docdb" || got["eventSourceArn"] != want["eventSourceArn"] {
		t.Fatalf("envelope %v, want %v", got, want)
	}
	ev := got["events"].([]any)[0].(map[string]any)
	wev := want["events"].([]any)[0].(map[string]any)
	if keys(ev) != keys(wev) {
		t.Fatalf("element %v, want %v", keys(ev), keys(wev))
	}
	e, w := ev["event"].(map[string]any), wev["event"].(map[string]any)
	// Every member of AWS's example, with its JSON shape; mongotest, as
	// mongod 6.0 and later, adds wallTime (DocumentDB does not send it).
	for k := range w {
		if _, ok := e[k]; !ok {
			t.Errorf("event has no %q", k)
		}
	}
	for k := range e {
		if _, ok := w[k]; !ok && k != "wallTime" {
			t.Errorf("event has %q, which AWS's example has not", k)
		}
	}
	hexTok := regexp.MustCompile(`^[0-9A-Fa-f]+$`)
	oid := regexp.MustCompile(`^[0-9a-f]{24}$`)
	checks := []struct {
		path string
		ok   func(any) bool
	}{
		{"_id", func(v any) bool { m, ok := v.(map[string]any); return ok && len(m) == 1 }},
		{"_id._data", func(v any) bool { s, ok := v.(string); return ok && hexTok.MatchString(s) && s == recs[0].ID }},
		{"clusterTime.$timestamp.t", func(v any) bool { f, ok := v.(float64); return ok && f > 1.6e9 }},
		{"clusterTime.$timestamp.i", func(v any) bool { f, ok := v.(float64); return ok && f >= 1 }},
		{"documentKey._id.$oid", func(v any) bool { s, ok := v.(string); return ok && oid.MatchString(s) }},
		{"fullDocument._id.$oid", func(v any) bool { return v == at(e, "documentKey._id.$oid") }},
		{"fullDocument.anyField", func(v any) bool { return v == "sampleValue" }},
		{"ns.db", func(v any) bool { return v == "test_database" }},
		{"ns.coll", func(v any) bool { return v == "test_collection" }},
		{"operationType", func(v any) bool { return v == "insert" }},
	}
	for _, c := range checks {
		if v := at(e, c.path); !c.ok(v) {
			t.Errorf("%s = %#v (AWS's example: %#v)", c.path, v, at(w, c.path))
		}
		if reflect.TypeOf(at(e, c.path)) != reflect.TypeOf(at(w, c.path)) {
			t.Errorf("%s is a %T, AWS's example's a %T", c.path, at(e, c.path), at(w, c.path))
		}
	}
	if ts := e["clusterTime"].(map[string]any)["$timestamp"].(map[string]any); len(ts) != 2 {
		t.Errorf("clusterTime.$timestamp %v", ts)
	}
	if k := at(e, "documentKey").(map[string]any); len(k) != 1 {
		t.Errorf("documentKey %v", k)
	}
}

// at returns the member at a dotted path of nested JSON objects.
func at(v any, path string) any {
	for _, k := range splitPath(path) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	b, _ := json.Marshal(ks)
	return string(b)
}

// changeEvent is a change event as MongoDB documents it
// (https://www.mongodb.com/docs/manual/reference/change-events/), in the
// driver's BSON types. The driver has no such struct of its own, and
// aws-lambda-go (v1.55.1) no DocumentDB event type.
type changeEvent struct {
	ID            bson.Raw       `bson:"_id"`
	OperationType string         `bson:"operationType"`
	ClusterTime   bson.Timestamp `bson:"clusterTime"`
	WallTime      bson.DateTime  `bson:"wallTime"`
	NS            struct{ DB, Coll string }
	DocumentKey   struct {
		ID bson.ObjectID `bson:"_id"`
	} `bson:"documentKey"`
	FullDocument      bson.D `bson:"fullDocument"`
	UpdateDescription *struct {
		UpdatedFields   bson.D     `bson:"updatedFields"`
		RemovedFields   []string   `bson:"removedFields"`
		TruncatedArrays []bson.Raw `bson:"truncatedArrays"`
	} `bson:"updateDescription"`
}

// TestEventsAreTheDriversChangeEvents: each event (insert, update,
// replace, delete; both FullDocument modes) is, read back from its
// relaxed extended JSON with the driver, the very change event the
// driver's own change stream returns, byte for byte (so every field, its
// BSON type and its order are the server's), and decodes into MongoDB's
// change event shape with the values written.
func TestEventsAreTheDriversChangeEvents(t *testing.T) {
	for _, lookup := range []bool{false, true} {
		t.Run(map[bool]string{false: "Default", true: "UpdateLookup"}[lookup], func(t *testing.T) {
			recs, raw := changes(t, lookup)
			if len(raw) != len(recs) {
				t.Fatalf("%d records, %d driver events", len(recs), len(raw))
			}
			var evs []changeEvent
			for i, r := range recs {
				var elem struct{ Event json.RawMessage }
				decodeJSON(t, r.Data, &elem)
				var back bson.Raw
				if err := bson.UnmarshalExtJSON(elem.Event, false, &back); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if !bytes.Equal(back, raw[i]) {
					t.Errorf("event %d reads back as\n%s\nthe driver's change event is\n%s", i, back, raw[i])
				}
				var ev changeEvent
				if err := bson.UnmarshalExtJSON(elem.Event, false, &ev); err != nil {
					t.Fatalf("event %d does not decode as a change event: %v", i, err)
				}
				if tok, _ := ev.ID.Lookup("_data").StringValueOK(); tok != r.ID {
					t.Errorf("event %d: _id %s, record ID %s", i, ev.ID, r.ID)
				}
				if time.Unix(int64(ev.ClusterTime.T), 0) != r.Arrival || ev.NS.DB != "test_database" || ev.NS.Coll != "test_collection" {
					t.Errorf("event %d: %+v, arrival %v", i, ev, r.Arrival)
				}
				evs = append(evs, ev)
			}
			ops := []string{evs[0].OperationType, evs[1].OperationType, evs[2].OperationType, evs[3].OperationType}
			if !slices.Equal(ops, []string{"insert", "update", "replace", "delete"}) {
				t.Fatalf("operations %v", ops)
			}
			id := evs[0].DocumentKey.ID
			for i, ev := range evs {
				if ev.DocumentKey.ID != id {
					t.Errorf("event %d: documentKey %v, want %v", i, ev.DocumentKey.ID, id)
				}
			}
			want := []string{
				`{"_id": {"$oid":"` + id.Hex() + `"},"anyField": "sampleValue","n": {"$numberInt":"1"},"x": {"$numberDouble":"2.5"}}`,
				`{"_id": {"$oid":"` + id.Hex() + `"},"anyField": "replaced"}`,
			}
			full := func(i int) string {
				if evs[i].FullDocument == nil {
					return ""
				}
				b, _ := bson.Marshal(evs[i].FullDocument)
				return bson.Raw(b).String()
			}
			if full(0) != want[0] || full(2) != want[1] || full(3) != "" {
				t.Errorf("fullDocument of insert %q, replace %q, delete %q; want %q %q", full(0), full(2), full(3), want[0], want[1])
			}
			if u := evs[1].UpdateDescription; u == nil || len(u.UpdatedFields) != 1 || u.UpdatedFields[0].Key != "n" ||
				!slices.Equal(u.RemovedFields, []string{"x"}) || len(u.TruncatedArrays) != 0 {
				t.Errorf("updateDescription %+v", u)
			}
			// The update's lookup happens when the event is read: the
			// document is deleted by then, so it is null (MongoDB's
			// documented behaviour); without a lookup there is none.
			if typ := raw[1].Lookup("fullDocument").Type; lookup && typ != bson.TypeNull || !lookup && typ != 0 || full(1) != "" {
				t.Errorf("update's fullDocument: %v %s", typ, full(1))
			}
		})
	}
}

// TestAppendEvent: the element is {"event":...} around the relaxed
// extended JSON of the change event, in its field order, with no HTML
// escaping.
func TestAppendEvent(t *testing.T) {
	ev, _ := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: "82AB"}}},
		{Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1676588775, I: 9}},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Date(2023, 2, 16, 23, 6, 15, 123e6, time.UTC))},
		{Key: "fullDocument", Value: bson.D{{Key: "a<b>&", Value: int64(1) << 40}, {Key: "f", Value: 1.0}, {Key: "z", Value: nil}}},
	})
	got, err := documentdb.AppendEvent([]byte("["), ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"event":{"_id":{"_data":"82AB"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1676588775,"i":9}},` +
		`"wallTime":{"$date":"2023-02-16T23:06:15.123Z"},"fullDocument":{"a<b>&":1099511627776,"f":1.0,"z":null}}}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
