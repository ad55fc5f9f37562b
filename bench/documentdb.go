package bench

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/mongotest"
)

// The DocumentDB cluster the bench's mappings name (esmd finds it with
// --docdb-cluster) and the database its collections are in.
const (
	docdbClusterARN = "arn:aws:rds:us-east-1:000000000000:cluster:esmd-bench"
	docdbDatabase   = "esmd_bench"
)

// docdbTarget is a collection per round on the MongoDB-compatible replica
// set of --docdb-uri, or on an in-process one (internal/mongotest) without
// it. Records are inserted as documents {bk, kind, pad}.
type docdbTarget struct {
	srv   *mongotest.Server // nil with --docdb-uri
	cl    *mongo.Client
	b     *brokerURL // the URI's credentials, for the secrets file
	uri   string     // without credentials
	coll  string
	since time.Time
}

func newDocumentDB(ctx context.Context, cfg *Config) (*docdbTarget, error) {
	t := &docdbTarget{}
	raw := cfg.DocDBURI
	if raw == "" {
		srv, err := mongotest.Start(mongotest.Options{Username: "bench", Password: "bench-secret"})
		if err != nil {
			return nil, fmt.Errorf("in-process MongoDB: %w", err)
		}
		t.srv, raw = srv, srv.UserURI("bench", "bench-secret")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mongodb" {
		t.Close()
		return nil, fmt.Errorf("--docdb-uri must be mongodb://user:password@host:port/?replicaSet=NAME")
	}
	pass, _ := u.User.Password()
	t.b = &brokerURL{user: u.User.Username(), pass: pass}
	u.User = nil
	t.uri = u.String()
	cl, err := mongo.Connect(options.Client().ApplyURI(raw))
	if err != nil {
		t.Close()
		return nil, err
	}
	t.cl = cl
	if err := cl.Ping(ctx, nil); err != nil {
		t.Close()
		return nil, fmt.Errorf("MongoDB: %w", err)
	}
	return t, nil
}

func (t *docdbTarget) Prepare(ctx context.Context, round string) error {
	t.coll = "r" + strings.ReplaceAll(round, "-", "_")
	// The raw loop opens its change stream at this time, to read records
	// produced before it started (esmd: TRIM_HORIZON).
	t.since = time.Now().Add(-time.Second)
	return t.cl.Database(docdbDatabase).CreateCollection(ctx, t.coll)
}

// Produce inserts a document per body with InsertMany.
func (t *docdbTarget) Produce(ctx context.Context, bodies [][]byte) error {
	docs := make([]any, 0, len(bodies))
	for _, b := range bodies {
		bk, kind, pad, ok := recordFields(b)
		if !ok {
			return fmt.Errorf("not a bench record: %.60s", b)
		}
		docs = append(docs, bson.D{{Key: "bk", Value: string(bk)}, {Key: "kind", Value: string(kind)}, {Key: "pad", Value: string(pad)}})
	}
	_, err := t.cl.Database(docdbDatabase).Collection(t.coll).InsertMany(ctx, docs)
	return err
}

func (t *docdbTarget) Mapping() *esm.Config {
	return &esm.Config{EventSourceArn: ptr(docdbClusterARN), StartingPosition: ptr("TRIM_HORIZON"),
		DocumentDBEventSourceConfig: &esm.DocumentDBEventSourceConfig{DatabaseName: ptr(docdbDatabase), CollectionName: ptr(t.coll)},
		SourceAccessConfigurations:  []esm.SourceAccessConfiguration{{Type: ptr("BASIC_AUTH"), URI: ptr(mqSecretARN)}}}
}

// EsmdFlags names the cluster and writes its credentials.
func (t *docdbTarget) EsmdFlags(dir string) ([]string, error) {
	flags, err := t.b.esmdFlags(dir, "")
	if err != nil {
		return nil, err
	}
	uri := t.uri
	if !strings.Contains(uri, "tls=") {
		uri += map[bool]string{true: "&", false: "?"}[strings.Contains(uri, "?")] + "tls=false"
	}
	// esmdFlags named a broker; only its secrets file is wanted here.
	return []string{"--docdb-cluster", docdbClusterARN + "=" + uri, flags[2], flags[3]}, nil
}

func (t *docdbTarget) Raw() RawSpec {
	u, _ := url.Parse(t.uri)
	u.User = url.UserPassword(t.b.user, t.b.pass)
	return RawSpec{Endpoints: []string{u.String()}, Name: t.coll, Arn: docdbClusterARN, Since: t.since}
}

// Filter is empty: Lambda does not filter DocumentDB change streams.
func (t *docdbTarget) Filter() string { return "" }

func (t *docdbTarget) Close() {
	if t.cl != nil {
		_ = t.cl.Disconnect(context.Background())
	}
	if t.srv != nil {
		_ = t.srv.Close()
	}
}
