package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
)

// TestServeDocumentDBEndToEnd drives esmd serve as a user does, with
// DocumentDB clusters played by internal/mongotest (a MongoDB
// wire-protocol server: see its package documentation for what that does
// and does not say about DocumentDB) and a real function (internal/testfn
// under the Runtime Interface Emulator, behind a proxy that records every
// event it is sent): mappings are created through the Lambda API with the
// AWS SDK, clusters named with --docdb-cluster, credentials in
// --secrets-file, and each subtest checks one behaviour of issue 14 on its
// own collection. One RIE and one esmd serve for all of them.
func TestServeDocumentDBEndToEnd(t *testing.T) {
	testenv.Skip(t)
	e := newDocDBE2E(t)
	ctx := context.Background()

	// Inserts, updates, replaces and deletes reach the function in order,
	// in AWS's event shape (spec 1.8); FullDocument Default carries no
	// document in an update.
	t.Run("ChangeKinds", func(t *testing.T) {
		c := e.coll(t, "kinds")
		id := e.create(t, "", c, nil)
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "body", Value: "inserted"}, {Key: "n", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "k"}}, bson.D{{Key: "body", Value: "replaced"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: "k"}}); err != nil {
			t.Fatal(err)
		}
		evs := e.fn.wait(t, c, 4)
		ops := []string{evs[0].OperationType, evs[1].OperationType, evs[2].OperationType, evs[3].OperationType}
		if !slices.Equal(ops, []string{"insert", "update", "replace", "delete"}) {
			t.Fatalf("operations %v", ops)
		}
		for i, ev := range evs {
			if ev.ID.Data == "" || ev.ClusterTime.TS.T == 0 || string(ev.DocumentKey) != `{"_id":"k"}` || ev.NS.DB != c.Database().Name() || ev.NS.Coll != c.Name() {
				t.Errorf("event %d: %+v", i, ev)
			}
		}
		if string(evs[0].FullDocument) != `{"_id":"k","body":"inserted","n":1}` || string(evs[2].FullDocument) != `{"_id":"k","body":"replaced"}` {
			t.Errorf("insert's and replace's fullDocument: %s, %s", evs[0].FullDocument, evs[2].FullDocument)
		}
		if evs[1].FullDocument != nil || string(evs[1].UpdateDescription) != `{"updatedFields":{"n":2},"removedFields":[],"truncatedArrays":[]}` {
			t.Errorf("update: fullDocument %s, updateDescription %s", evs[1].FullDocument, evs[1].UpdateDescription)
		}
		e.waitResult(t, id, "OK")
	})

	// FullDocument UpdateLookup: an update carries the document as it is
	// when the event is read.
	t.Run("UpdateLookup", func(t *testing.T) {
		c := e.coll(t, "lookup")
		e.create(t, "", c, func(in *lambda.CreateEventSourceMappingInput) {
			in.DocumentDBEventSourceConfig.FullDocument = types.FullDocumentUpdateLookup
		})
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
			t.Fatal(err)
		}
		evs := e.fn.wait(t, c, 2)
		if evs[1].OperationType != "update" || string(evs[1].FullDocument) != `{"_id":1,"n":2}` {
			t.Errorf("update event %+v, fullDocument %s", evs[1], evs[1].FullDocument)
		}
	})

	// Without CollectionName, the change stream of the whole database: every
	// collection's events, in order, and none of another database.
	t.Run("WholeDatabase", func(t *testing.T) {
		db := e.mongo.Database(fmt.Sprintf("whole_%d", time.Now().UnixNano()))
		e.create(t, "", db.Collection("a"), func(in *lambda.CreateEventSourceMappingInput) {
			in.DocumentDBEventSourceConfig.CollectionName = nil
		})
		for i, coll := range []string{"a", "b", "a"} {
			if _, err := db.Collection(coll).InsertOne(ctx, bson.D{{Key: "body", Value: fmt.Sprintf("%s-%d", coll, i)}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.mongo.Database(db.Name()+"_other").Collection("a").InsertOne(ctx, bson.D{{Key: "body", Value: "other"}}); err != nil {
			t.Fatal(err)
		}
		var got []string
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			got = got[:0]
			for _, ev := range e.fn.events(func(ev docdbEvent) bool { return strings.HasPrefix(ev.NS.DB, db.Name()) }) {
				got = append(got, ev.NS.Coll+":"+ev.body())
			}
			if len(got) < 3 {
				return fmt.Errorf("the function got %v", got)
			}
			return nil
		})
		if !slices.Equal(got, []string{"a:a-0", "b:b-1", "a:a-2"}) {
			t.Errorf("the function got %v", got)
		}
	})

	// LATEST reads what is written once the mapping runs; TRIM_HORIZON
	// everything retained; AT_TIMESTAMP from the events of the timestamp's
	// second (spec DOC-4).
	t.Run("StartingPositions", func(t *testing.T) {
		th := e.coll(t, "trim")
		insertBodies(t, th, "th-0", "th-1")
		e.create(t, "", th, nil) // TRIM_HORIZON

		at := e.coll(t, "at")
		insertBodies(t, at, "old")
		// Not a wait for esmd: clusterTime has whole seconds, so "mid" is
		// written in a later second than "old".
		mid := time.Now().Truncate(time.Second).Add(time.Second)
		time.Sleep(time.Until(mid) + 10*time.Millisecond)
		insertBodies(t, at, "mid")
		e.create(t, "", at, func(in *lambda.CreateEventSourceMappingInput) {
			in.StartingPosition, in.StartingPositionTimestamp = types.EventSourcePositionAtTimestamp, aws.Time(mid)
		})

		latest := e.coll(t, "latest")
		insertBodies(t, latest, "before")
		e.create(t, "", latest, func(in *lambda.CreateEventSourceMappingInput) {
			in.StartingPosition = types.EventSourcePositionLatest
		})
		// The stream opens at LATEST when the mapping first runs: documents
		// are written until one arrives; what arrives must be a suffix of
		// what was written after the mapping was created.
		var after []string
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if len(e.fn.of(latest)) > 0 {
				return nil
			}
			b := fmt.Sprintf("after-%d", len(after))
			insertBodies(t, latest, b)
			after = append(after, b)
			return errors.New("nothing delivered yet")
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if got := bodies(e.fn.of(latest)); got[len(got)-1] != after[len(after)-1] {
				return fmt.Errorf("LATEST delivered %v, waiting for %s", got, after[len(after)-1])
			}
			return nil
		})
		if got := bodies(e.fn.of(latest)); slices.Contains(got, "before") || !slices.Equal(got, after[len(after)-len(got):]) {
			t.Errorf("LATEST delivered %v; written after creation %v", got, after)
		}
		if got := bodies(e.fn.wait(t, th, 2)); !slices.Equal(got, []string{"th-0", "th-1"}) {
			t.Errorf("TRIM_HORIZON delivered %v", got)
		}
		if got := bodies(e.fn.wait(t, at, 1)); !slices.Equal(got, []string{"mid"}) {
			t.Errorf("AT_TIMESTAMP delivered %v, want [mid]", got)
		}
	})

	// A function failing twice on a batch gets it again until it succeeds
	// (spec DOC-6), the whole batch each time, and then the next events:
	// nothing lost, order kept.
	t.Run("FailsTwiceThenSucceeds", func(t *testing.T) {
		c := e.coll(t, "flaky")
		key := fmt.Sprintf("flaky-%d", time.Now().UnixNano())
		docs := []any{bson.D{{Key: "body", Value: "f-0"}, {Key: "testfn", Value: bson.D{{Key: "mode", Value: "flaky"}, {Key: "times", Value: 2}, {Key: "key", Value: key}}}}}
		for i := 1; i < 10; i++ {
			docs = append(docs, bson.D{{Key: "body", Value: fmt.Sprintf("f-%d", i)}})
		}
		if _, err := c.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
		id := e.create(t, "", c, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(10) })
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.batches(c)); n < 3 {
				return fmt.Errorf("%d invocations: %v", n, batchBodies(e.fn.batches(c)))
			}
			return nil
		})
		// The batch's last attempt succeeded: the mapping says OK again.
		e.waitResult(t, id, "OK")
		insertBodies(t, c, "f-10")
		e.fn.wait(t, c, 31)
		e.waitResult(t, id, "OK")
		b := e.fn.batches(c)
		want := []string{"f-0", "f-1", "f-2", "f-3", "f-4", "f-5", "f-6", "f-7", "f-8", "f-9"}
		if len(b) != 4 || !slices.Equal(bodies(b[0]), want) || !slices.Equal(bodies(b[1]), want) || !slices.Equal(bodies(b[2]), want) ||
			!slices.Equal(bodies(b[3]), []string{"f-10"}) {
			t.Errorf("invocations: %v", batchBodies(b))
		}
	})

	// FilterCriteria are refused for DocumentDB, as AWS refuses them.
	t.Run("FilteringRefused", func(t *testing.T) {
		c := e.coll(t, "filter")
		in := e.input(e.cluster(), c)
		in.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"event":{"operationType":["insert"]}}`)}}}
		_, err := e.cl.CreateEventSourceMapping(ctx, in)
		var ipv *types.InvalidParameterValueException
		if !errors.As(err, &ipv) || aws.ToString(ipv.Message) != "Unsupported FilterCriteria parameter for given event source mapping type." {
			t.Errorf("create with FilterCriteria: %v", err)
		}
	})

	// Events that expired from the change stream before the mapping read
	// them: Lambda disables the mapping (spec DOC-6); esmd says why.
	t.Run("HistoryLostDisables", func(t *testing.T) {
		c := e.lostMongo.Database("lost").Collection(fmt.Sprintf("c_%d", time.Now().UnixNano()))
		insertBodies(t, c, "l-0")
		id := e.create(t, e.lostCluster, c, nil)
		e.fn.wait(t, c, 1)
		e.lost.TrimHistory()
		m := e.waitDisabled(t, id)
		if r := aws.ToString(m.StateTransitionReason); r != "ESM_CONFIG_NOT_VALID" {
			t.Errorf("StateTransitionReason %q", r)
		}
		if r := aws.ToString(m.LastProcessingResult); !strings.HasPrefix(r, "PROBLEM: documentdb: ") || !strings.Contains(r, "ChangeStreamHistoryLost") {
			t.Errorf("LastProcessingResult %q", r)
		}
	})

	// Credentials the cluster refuses: the mapping is disabled with
	// EVENT_SOURCE_AUTHN_ERROR.
	t.Run("WrongCredentialsDisable", func(t *testing.T) {
		c := e.coll(t, "authn")
		id := e.create(t, "", c, func(in *lambda.CreateEventSourceMappingInput) {
			in.SourceAccessConfigurations[0].URI = aws.String(e.badSecret)
		})
		m := e.waitDisabled(t, id)
		if r := aws.ToString(m.StateTransitionReason); r != "EVENT_SOURCE_AUTHN_ERROR" {
			t.Errorf("StateTransitionReason %q", r)
		}
		if r := aws.ToString(m.LastProcessingResult); !strings.HasPrefix(r, "PROBLEM: ") || !strings.Contains(r, "Authentication failed") {
			t.Errorf("LastProcessingResult %q", r)
		}
	})
}

// docdbE2E is one esmd serve with DocumentDB mappings on two mongotest
// servers: the shared one, and one whose history a subtest trims.
type docdbE2E struct {
	srv, lost             *mongotest.Server
	mongo, lostMongo      *mongo.Client
	fn                    *docdbFunction
	cl                    *lambda.Client
	addr                  string   // serve's API
	clusters              []string // ARNs of the shared server
	next                  int      // the next of clusters to use
	lostCluster           string   // the ARN of lost
	goodSecret, badSecret string
}

// cluster returns an ARN of the shared server no mapping used yet: esmd,
// like AWS, allows one mapping per cluster and function (AWS's rule for
// DocumentDB is not recorded; esm keys it on the ARN alone).
func (e *docdbE2E) cluster() string {
	e.next++
	return e.clusters[e.next-1]
}

func newDocDBE2E(t *testing.T) *docdbE2E {
	t.Helper()
	lost, err := mongotest.Start(mongotest.Options{Username: testenv.MongoUser, Password: testenv.MongoPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lost.Close() })
	e := &docdbE2E{srv: testenv.Mongo(t), lost: lost, fn: newDocDBFunction(t, testenv.RIE(t)),
		lostCluster: "arn:aws:rds:us-east-1:000000000000:cluster:e2e-docdb-lost",
		goodSecret:  "arn:aws:secretsmanager:us-east-1:000000000000:secret:docdb-good",
		badSecret:   "arn:aws:secretsmanager:us-east-1:000000000000:secret:docdb-bad"}
	e.mongo, e.lostMongo = mongoClient(t, e.srv), mongoClient(t, lost)
	dir := t.TempDir()
	secrets, _ := json.Marshal(map[string]map[string]string{
		e.goodSecret: {"username": testenv.MongoUser, "password": testenv.MongoPassword},
		e.badSecret:  {"username": testenv.MongoUser, "password": "wrong"},
	})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--docdb-cluster", e.lostCluster + "=" + lost.URI() + "&tls=false", "--secrets-file", filepath.Join(dir, "secrets.json")}
	for i := range 16 {
		arn := fmt.Sprintf("arn:aws:rds:us-east-1:000000000000:cluster:e2e-docdb-%d", i)
		e.clusters = append(e.clusters, arn)
		args = append(args, "--docdb-cluster", arn+"="+e.srv.URI()+"&tls=false")
	}
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c.dataDir = filepath.Join(dir, "data")
	c.invokeMode = "rie"
	c.lambdaEndpoint = e.fn.URL
	addr, stop := serveWith(t, c)
	t.Cleanup(stop)
	e.cl, e.addr = client(addr), addr
	return e
}

// mongoClient connects to a mongotest server as the test user.
func mongoClient(t *testing.T, s *mongotest.Server) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).
		SetAuth(options.Credential{Username: testenv.MongoUser, Password: testenv.MongoPassword}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// coll returns a new collection of database "e2e" on the shared server.
func (e *docdbE2E) coll(t *testing.T, prefix string) *mongo.Collection {
	return e.mongo.Database("e2e").Collection(fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()))
}

// input is a CreateEventSourceMapping request for a collection of a
// cluster, from TRIM_HORIZON, with the good secret.
func (e *docdbE2E) input(cluster string, c *mongo.Collection) *lambda.CreateEventSourceMappingInput {
	return &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(cluster),
		StartingPosition: types.EventSourcePositionTrimHorizon,
		DocumentDBEventSourceConfig: &types.DocumentDBEventSourceConfig{
			DatabaseName: aws.String(c.Database().Name()), CollectionName: aws.String(c.Name())},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(e.goodSecret)}}}
}

// create creates a mapping of collection c of a cluster ("": a new one of
// the shared server) through the API and returns its UUID; it is deleted
// when the test ends.
func (e *docdbE2E) create(t *testing.T, cluster string, c *mongo.Collection, edit func(*lambda.CreateEventSourceMappingInput)) string {
	t.Helper()
	if cluster == "" {
		cluster = e.cluster()
	}
	in := e.input(cluster, c)
	return createMapping(t, e.cl, in, edit)
}

func (e *docdbE2E) get(t *testing.T, id string) *lambda.GetEventSourceMappingOutput {
	t.Helper()
	return getMapping(t, e.cl, id)
}

func (e *docdbE2E) waitResult(t *testing.T, id, want string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if r := aws.ToString(e.get(t, id).LastProcessingResult); r != want {
			return fmt.Errorf("LastProcessingResult %q", r)
		}
		return nil
	})
}

func (e *docdbE2E) waitDisabled(t *testing.T, id string) *lambda.GetEventSourceMappingOutput {
	t.Helper()
	var m *lambda.GetEventSourceMappingOutput
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		m = e.get(t, id)
		if st := aws.ToString(m.State); st != "Disabled" {
			return fmt.Errorf("state %s (%s)", st, aws.ToString(m.LastProcessingResult))
		}
		return nil
	})
	return m
}

func insertBodies(t *testing.T, c *mongo.Collection, bodies ...string) {
	t.Helper()
	docs := make([]any, len(bodies))
	for i, b := range bodies {
		docs[i] = bson.D{{Key: "body", Value: b}}
	}
	if _, err := c.InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
}

// docdbEvent is the part of a DocumentDB change event the tests look at.
type docdbEvent struct {
	ID struct {
		Data string `json:"_data"`
	} `json:"_id"`
	OperationType string `json:"operationType"`
	ClusterTime   struct {
		TS struct{ T, I uint32 } `json:"$timestamp"`
	} `json:"clusterTime"`
	NS struct {
		DB   string `json:"db"`
		Coll string `json:"coll"`
	} `json:"ns"`
	DocumentKey       json.RawMessage `json:"documentKey"`
	FullDocument      json.RawMessage `json:"fullDocument"`
	UpdateDescription json.RawMessage `json:"updateDescription"`
}

func (ev docdbEvent) body() string {
	var d struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal(ev.FullDocument, &d)
	return d.Body
}

func bodies(evs []docdbEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.body()
	}
	return out
}

func batchBodies(b [][]docdbEvent) [][]string {
	out := make([][]string, len(b))
	for i, evs := range b {
		out[i] = bodies(evs)
	}
	return out
}

// docdbFunction is a proxy in front of RIE that records the events of
// every DocumentDB invocation before the function gets it.
type docdbFunction struct {
	*httptest.Server
	mu    sync.Mutex
	calls [][]docdbEvent
}

func newDocDBFunction(t *testing.T, rie string) *docdbFunction {
	target, err := url.Parse(rie)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &docdbFunction{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev struct {
			EventSourceArn string `json:"eventSourceArn"`
			EventSource    string `json:"eventSource"`
			Events         []struct {
				Event docdbEvent `json:"event"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &ev); err != nil || ev.EventSource != "aws:docdb" || !strings.HasPrefix(ev.EventSourceArn, "arn:aws:rds:") {
			http.Error(w, fmt.Sprintf("not a DocumentDB event (%v): %.300s", err, body), http.StatusBadRequest)
			return
		}
		batch := make([]docdbEvent, len(ev.Events))
		for i, x := range ev.Events {
			batch[i] = x.Event
		}
		f.mu.Lock()
		f.calls = append(f.calls, batch)
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// batches returns the invocations' events of collection c, in order.
func (f *docdbFunction) batches(c *mongo.Collection) [][]docdbEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]docdbEvent
	for _, b := range f.calls {
		var mine []docdbEvent
		for _, ev := range b {
			if ev.NS.DB == c.Database().Name() && ev.NS.Coll == c.Name() {
				mine = append(mine, ev)
			}
		}
		if len(mine) > 0 {
			out = append(out, mine)
		}
	}
	return out
}

// of returns the events of collection c the function was sent, in order.
func (f *docdbFunction) of(c *mongo.Collection) []docdbEvent {
	var out []docdbEvent
	for _, b := range f.batches(c) {
		out = append(out, b...)
	}
	return out
}

// events returns the events keep keeps, in order.
func (f *docdbFunction) events(keep func(docdbEvent) bool) []docdbEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []docdbEvent
	for _, b := range f.calls {
		for _, ev := range b {
			if keep(ev) {
				out = append(out, ev)
			}
		}
	}
	return out
}

// wait waits until the function was sent n events of collection c and
// returns them.
func (f *docdbFunction) wait(t *testing.T, c *mongo.Collection, n int) []docdbEvent {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if got := len(f.of(c)); got < n {
			return fmt.Errorf("the function got %d of %d events of %s", got, n, c.Name())
		}
		return nil
	})
	return f.of(c)
}

// TestDocumentDBSIGKILLRestart kills the esmd process (SIGKILL: no clean
// close, no last checkpoint) while a DocumentDB mapping is mid-stream and
// starts it again on the same data directory: the mapping resumes after
// the resume token it checkpointed, every event reaches the function, and
// with --docdb-checkpoint-interval 0 only the batch in flight at the kill
// comes twice. With the default 100 ms, what finished in the last interval
// (and, on a loaded machine, before the first write completed) comes
// twice too: not asserted, logged.
func TestDocumentDBSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	s := testenv.Mongo(t)
	bin := buildBinary(t)
	const n, batch = 300, 5
	for _, tc := range []struct {
		name, interval string
		maxDup         int // 0: not asserted
	}{
		{name: "sync", interval: "0s", maxDup: batch},
		{name: "coalesced", interval: "100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c := mongoClient(t, s).Database("sigkill").Collection(fmt.Sprintf("%s_%d", tc.name, time.Now().UnixNano()))
			var names []string
			for i := range n {
				names = append(names, fmt.Sprintf("k-%03d", i))
			}
			insertBodies(t, c, names...)
			rec := newInvokeRecorder(docdbKeys)
			fn := httptest.NewServer(rec)
			defer fn.Close()
			dir := t.TempDir()
			secret := "arn:aws:secretsmanager:us-east-1:000000000000:secret:docdb"
			secrets, _ := json.Marshal(map[string]map[string]string{secret: {"username": testenv.MongoUser, "password": testenv.MongoPassword}})
			if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
				t.Fatal(err)
			}
			cluster := "arn:aws:rds:us-east-1:000000000000:cluster:kill"
			args := []string{"--data-dir", filepath.Join(dir, "data"), "--lambda-endpoint", fn.URL, "--function-check", "never",
				"--docdb-cluster", cluster + "=" + s.URI() + "&tls=false", "--secrets-file", filepath.Join(dir, "secrets.json"),
				"--docdb-checkpoint-interval", tc.interval}
			cmd, addr := startBinary(t, bin, args...)
			_, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
				EventSourceArn: aws.String(cluster), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(batch),
				DocumentDBEventSourceConfig: &types.DocumentDBEventSourceConfig{DatabaseName: aws.String("sigkill"), CollectionName: aws.String(c.Name())},
				SourceAccessConfigurations:  []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(secret)}}})
			if err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, func(context.Context) error {
				if k, _, _ := rec.count(); k < 10 {
					return fmt.Errorf("%d invocations", k)
				}
				return nil
			})
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			_, before, _ := rec.count()
			if before >= n {
				t.Fatalf("all %d events were done before the kill; the test needs some left", before)
			}

			startBinary(t, bin, args...)
			testenv.Eventually(t, 60*time.Second, func(context.Context) error {
				if _, distinct, _ := rec.count(); distinct != n {
					return fmt.Errorf("%d of %d events reached the function", distinct, n)
				}
				return nil
			})
			_, distinct, total := rec.count()
			dup := total - distinct
			t.Logf("killed after %d of %d events; %d duplicate deliveries after the restart", before, n, dup)
			if tc.maxDup > 0 && dup > tc.maxDup {
				t.Errorf("%d duplicate deliveries, want at most %d (the batch in flight)", dup, tc.maxDup)
			}
		})
	}
}

// docdbKeys names each event of a DocumentDB invocation by its document's
// body.
func docdbKeys(body []byte) ([]string, error) {
	var ev struct {
		Events []struct {
			Event docdbEvent `json:"event"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	keys := make([]string, len(ev.Events))
	for i, x := range ev.Events {
		keys[i] = x.Event.body()
	}
	return keys, nil
}
