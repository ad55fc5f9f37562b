package documentdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const db = "esmd"

var seq atomic.Int64

// collName returns a collection name unique in the test binary.
func collName(t testing.TB) string {
	n := strings.NewReplacer("/", "_", " ", "_", "#", "_").Replace(t.Name())
	if len(n) > 40 {
		n = n[len(n)-40:]
	}
	return fmt.Sprintf("%s_%d", n, seq.Add(1))
}

// plainURI is a server's connection string without TLS (mongotest serves
// plain TCP unless told otherwise; the poller turns TLS on by default).
func plainURI(s *mongotest.Server) string { return s.URI() + "&tls=false" }

// private starts a server of the test's own, with testenv's credentials.
func private(t testing.TB, o mongotest.Options) *mongotest.Server {
	t.Helper()
	if o.Username == "" {
		o.Username, o.Password = testenv.MongoUser, testenv.MongoPassword
	}
	s, err := mongotest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openStore opens a checkpoint store of the test's own.
func openStore(t testing.TB) *checkpoint.Store {
	t.Helper()
	st, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// config reads coll of db on s (the whole database when coll is empty)
// from TRIM_HORIZON, checkpointing every Done at once.
func config(s *mongotest.Server, st documentdb.Positions, coll string) documentdb.Config {
	return documentdb.Config{
		URI: plainURI(s), Username: testenv.MongoUser, Password: testenv.MongoPassword,
		Database: db, Collection: coll, StartingPosition: documentdb.TrimHorizon,
		Mapping: "6f1c0d4e-0000-4000-8000-0000000000dd", Positions: st,
		MaxAwaitTime: 200 * time.Millisecond, ReconnectDelay: 20 * time.Millisecond, MaxReconnectDelay: 200 * time.Millisecond,
	}
}

// open opens a poller, closed when the test ends.
func open(t testing.TB, c documentdb.Config) *documentdb.Poller {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := documentdb.Open(ctx, c)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// client connects to s as the test user; it is closed with the test.
func client(t testing.TB, s *mongotest.Server) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).
		SetAuth(options.Credential{Username: testenv.MongoUser, Password: testenv.MongoPassword}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// coll returns a collection of db on s, as the test user.
func coll(t testing.TB, s *mongotest.Server, name string) *mongo.Collection {
	return client(t, s).Database(db).Collection(name)
}

func insert(t testing.TB, c *mongo.Collection, docs ...any) {
	t.Helper()
	if _, err := c.InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
}

// change is the part of an encoded record the tests look at.
type change struct {
	Event struct {
		ID struct {
			Data string `json:"_data"`
		} `json:"_id"`
		OperationType string          `json:"operationType"`
		ClusterTime   json.RawMessage `json:"clusterTime"`
		NS            struct {
			DB   string `json:"db"`
			Coll string `json:"coll"`
		} `json:"ns"`
		DocumentKey       json.RawMessage `json:"documentKey"`
		FullDocument      json.RawMessage `json:"fullDocument"`
		UpdateDescription json.RawMessage `json:"updateDescription"`
	} `json:"event"`
}

func decode(t testing.TB, r source.Record) change {
	t.Helper()
	var c change
	if err := json.Unmarshal(r.Data, &c); err != nil {
		t.Fatalf("record %s: %v\n%s", r.ID, err, r.Data)
	}
	return c
}

// body returns the "body" field of an insert's full document.
func body(t testing.TB, r source.Record) string {
	t.Helper()
	var d struct {
		Body string `json:"body"`
	}
	c := decode(t, r)
	if len(c.Event.FullDocument) > 0 {
		if err := json.Unmarshal(c.Event.FullDocument, &d); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
	}
	return d.Body
}

// pollN polls until n records arrived.
func pollN(t testing.TB, p source.Poller, n int, wait time.Duration) []source.Record {
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

// pollNone checks that no record arrives during d (a negative check: it
// takes all of d; callers say why d is enough).
func pollNone(t testing.TB, p source.Poller, d time.Duration) {
	t.Helper()
	testenv.Consistently(t, d, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, testenv.PollInterval)
		defer cancel()
		recs, err := p.Poll(pctx)
		if len(recs) > 0 {
			return fmt.Errorf("%d records arrived: %s", len(recs), recs[0].Data)
		}
		if err != nil && pctx.Err() == nil {
			return err
		}
		return nil
	})
}

// bodies are the bodies of recs.
func bodies(t testing.TB, recs []source.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = body(t, r)
	}
	return out
}

// docs returns n documents {_id: "<prefix>-<i>", body: "<prefix>-<i>"}.
func docs(prefix string, n int) []any {
	out := make([]any, n)
	for i := range out {
		b := fmt.Sprintf("%s-%04d", prefix, i)
		out[i] = bson.D{{Key: "_id", Value: b}, {Key: "body", Value: b}}
	}
	return out
}

// tlsColl returns collection "c" of db on a TLS server, as the test user.
func tlsColl(t testing.TB, s *mongotest.Server) *mongo.Collection {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).SetTLSConfig(s.ClientTLSConfig()).
		SetAuth(options.Credential{Username: testenv.MongoUser, Password: testenv.MongoPassword}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(db).Collection("c")
}

func decodeJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
