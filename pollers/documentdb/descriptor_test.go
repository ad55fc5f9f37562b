package documentdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

const (
	clusterArn = "arn:aws:rds:us-east-1:000000000000:cluster:esmd-docdb"
	secretArn  = "arn:aws:secretsmanager:us-east-1:000000000000:secret:docdb"
)

func sp(s string) *string { return &s }

func i64(n int64) *int64 { return &n }

// mapping returns a DocumentDB mapping of collection "c" of db.
func mapping() *esm.Mapping {
	m := &esm.Mapping{UUID: "6f1c0d4e-0000-4000-8000-0000000000d0", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:f",
		Source: esm.SourceDocumentDB}
	m.Config.EventSourceArn = sp(clusterArn)
	m.Config.StartingPosition = sp("TRIM_HORIZON")
	m.Config.DocumentDBEventSourceConfig = &esm.DocumentDBEventSourceConfig{DatabaseName: sp(db), CollectionName: sp("c"), FullDocument: sp("UpdateLookup")}
	m.Config.SourceAccessConfigurations = []esm.SourceAccessConfiguration{{Type: sp("BASIC_AUTH"), URI: sp(secretArn)}}
	return m
}

// sourceEnv is an Env as cmd/esmd makes it, with a secrets file holding
// the test user under secretArn and flags.
func sourceEnv(t testing.TB, flags map[string][]string) *source.Env {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secrets.json")
	b, _ := json.Marshal(map[string]map[string]string{secretArn: {"username": testenv.MongoUser, "password": testenv.MongoPassword}})
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &source.Env{Secrets: sec, Flags: flags, Store: openStore(t), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestDescriptor(t *testing.T) {
	d := documentdb.Descriptor()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Source != esm.SourceDocumentDB || d.Delivery != source.Ordered || d.Filter != filter.SourceDocumentDB ||
		d.Oversize != source.OversizeDrop || d.MaxRetryAttempts != nil || d.FailureInfo != nil {
		t.Errorf("descriptor %+v", d)
	}
	if b := d.Batching; b != (source.Batching{BatchSize: 100, Window: 500 * time.Millisecond, FromFirstRecord: true}) {
		t.Errorf("batching %+v, want spec DOC-5's", b)
	}
	if h := d.Envelope(mapping()); !strings.Contains(h.Head, clusterArn) || h.Tail != `],"eventSource":"aws:docdb"}` {
		t.Errorf("envelope %+v", h)
	}
	var names []string
	for _, f := range d.Flags {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "docdb-cluster docdb-ca-file docdb-checkpoint-interval" {
		t.Errorf("flags %v", names)
	}
	// Filtering is refused for DocumentDB, as AWS refuses it.
	if _, err := filter.Compile([]string{`{"event":{"operationType":["insert"]}}`}, filter.WithSource(d.Filter)); err == nil {
		t.Error("a filter compiled for DocumentDB")
	}
}

func TestParseClusters(t *testing.T) {
	got, err := documentdb.ParseClusters([]string{
		clusterArn + "=mongodb://a:27017,b:27018/?replicaSet=rs0&tls=false",
		"arn:aws:rds:eu-west-1:1:cluster:x=mongodb://h/?tlsCAFile=/ca.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[clusterArn] != "mongodb://a:27017,b:27018/?replicaSet=rs0&tls=false" || got["arn:aws:rds:eu-west-1:1:cluster:x"] != "mongodb://h/?tlsCAFile=/ca.pem" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"no-equals", "=mongodb://h", clusterArn + "=", clusterArn + "=http://h", clusterArn + "=mongodb://h/?replicaSet"} {
		if _, err := documentdb.ParseClusters([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestConfigFor: a mapping becomes the poller's configuration: the
// cluster's URI from --docdb-cluster, the BASIC_AUTH secret's credentials,
// DocumentDBEventSourceConfig, the starting position, the CA bundle and
// checkpoint interval flags.
func TestConfigFor(t *testing.T) {
	env := sourceEnv(t, map[string][]string{
		documentdb.FlagCluster:            {clusterArn + "=mongodb://h:27017/?tls=false"},
		documentdb.FlagCAFile:             {"/ca.pem"},
		documentdb.FlagCheckpointInterval: {"0s"},
	})
	e, err := documentdb.EnvFor(env)
	if err != nil {
		t.Fatal(err)
	}
	m := mapping()
	m.Config.StartingPosition = sp("AT_TIMESTAMP")
	ts := 1700000000.25
	m.Config.StartingPositionTimestamp = &ts
	cfg, err := e.Config(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URI != "mongodb://h:27017/?tls=false" || cfg.Username != testenv.MongoUser || cfg.Password != testenv.MongoPassword ||
		cfg.Database != db || cfg.Collection != "c" || cfg.FullDocument != "UpdateLookup" || cfg.StartingPosition != "AT_TIMESTAMP" ||
		!cfg.Timestamp.Equal(time.Unix(1700000000, 250e6)) || cfg.CAFile != "/ca.pem" || cfg.CheckpointInterval != 0 ||
		cfg.Mapping != m.UUID || cfg.Positions == nil || cfg.EventSourceARN != clusterArn {
		t.Errorf("config %+v", cfg)
	}

	// The default checkpoint interval; a whole-database stream.
	env.Flags[documentdb.FlagCheckpointInterval] = nil
	e, _ = documentdb.EnvFor(env)
	m.Config.DocumentDBEventSourceConfig.CollectionName = nil
	cfg, _ = e.Config(context.Background(), m)
	if cfg.CheckpointInterval != 100*time.Millisecond || cfg.Collection != "" {
		t.Errorf("config %+v", cfg)
	}

	// The getMore batchSize: the mapping's BatchSize, at least 100 (the
	// server's own is 16 MB of events per read).
	for _, tc := range []struct {
		batch *int64
		want  int32
	}{{nil, 100}, {i64(1), 100}, {i64(500), 500}, {i64(10000), 10000}} {
		m.Config.BatchSize = tc.batch
		if cfg, _ = e.Config(context.Background(), m); cfg.BatchSize != tc.want {
			t.Errorf("BatchSize %v: getMore batchSize %d, want %d", tc.batch, cfg.BatchSize, tc.want)
		}
	}

	// A secret that does not exist; a bad flag.
	m.Config.SourceAccessConfigurations[0].URI = sp(secretArn + "-missing")
	if _, err := e.Config(context.Background(), m); err == nil || !strings.Contains(err.Error(), "BASIC_AUTH") {
		t.Errorf("missing secret: %v", err)
	}
	env.Flags[documentdb.FlagCheckpointInterval] = []string{"soon"}
	if _, err := documentdb.EnvFor(env); err == nil {
		t.Error("a bad --docdb-checkpoint-interval accepted")
	}
}

// TestDescribeCluster: a cluster not named by --docdb-cluster is found with
// RDS DescribeDBClusters (in the ARN's region), TLS on.
func TestDescribeCluster(t *testing.T) {
	var form url.Values
	rdsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form = r.PostForm
		if form.Get("DBClusterIdentifier") != clusterArn {
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `<ErrorResponse><Error><Type>Sender</Type><Code>DBClusterNotFoundFault</Code><Message>DBCluster not found</Message></Error></ErrorResponse>`)
			return
		}
		_, _ = io.WriteString(w, `<DescribeDBClustersResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBClustersResult><DBClusters><DBCluster>`+
			`<Engine>docdb</Engine><Endpoint>esmd-docdb.cluster-abc.us-east-1.docdb.amazonaws.com</Endpoint><Port>27017</Port>`+
			`</DBCluster></DBClusters></DescribeDBClustersResult></DescribeDBClustersResponse>`)
	}))
	defer rdsSrv.Close()
	env := sourceEnv(t, map[string][]string{})
	env.AWS = testenv.AWSConfig(rdsSrv.URL)
	e, err := documentdb.EnvFor(env)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := e.Config(context.Background(), mapping())
	if err != nil {
		t.Fatal(err)
	}
	if form.Get("Action") != "DescribeDBClusters" {
		t.Errorf("RDS request %v", form)
	}
	if cfg.URI != "mongodb://esmd-docdb.cluster-abc.us-east-1.docdb.amazonaws.com:27017/?replicaSet=rs0&retryWrites=false" {
		t.Errorf("URI %s", cfg.URI)
	}
	m := mapping()
	m.Config.EventSourceArn = sp(clusterArn + "-other")
	if _, err := e.Config(context.Background(), m); err == nil || !strings.Contains(err.Error(), "DBClusterNotFoundFault") || !strings.Contains(err.Error(), "--docdb-cluster") {
		t.Errorf("unknown cluster: %v", err)
	}
}

// TestDescriptorOpen opens a poller through the descriptor as esmd does,
// on a cluster named by --docdb-cluster with the BASIC_AUTH secret.
func TestDescriptorOpen(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	insert(t, coll(t, s, name), docs("o", 3)...)
	env := sourceEnv(t, map[string][]string{documentdb.FlagCluster: {clusterArn + "=" + plainURI(s)}})
	m := mapping()
	m.Config.DocumentDBEventSourceConfig.CollectionName = &name
	p, err := documentdb.Descriptor().Open(context.Background(), env, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := bodies(t, pollN(t, p, 3, 10*time.Second)); got[2] != "o-0002" {
		t.Errorf("got %v", got)
	}

	// Without the secret's credentials: refused, the mapping disabled.
	env = sourceEnv(t, map[string][]string{documentdb.FlagCluster: {clusterArn + "=" + s.URI() + "&tls=false&authSource=admin"}})
	bad := filepath.Join(t.TempDir(), "bad.json")
	b, _ := json.Marshal(map[string]map[string]string{secretArn: {"username": testenv.MongoUser, "password": "wrong"}})
	_ = os.WriteFile(bad, b, 0o600)
	env.Secrets, _ = secrets.Load(bad, nil)
	_, err = documentdb.Descriptor().Open(context.Background(), env, m)
	var de *esm.DisableError
	if !errors.As(err, &de) || de.Reason != "EVENT_SOURCE_AUTHN_ERROR" {
		t.Errorf("wrong password: %v", err)
	}
}
