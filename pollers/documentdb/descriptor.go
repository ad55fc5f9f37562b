package documentdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// Flags of the source (source.Descriptor.Flags).
const (
	FlagCluster            = "docdb-cluster"
	FlagCAFile             = "docdb-ca-file"
	FlagCheckpointInterval = "docdb-checkpoint-interval"
)

// Descriptor describes Amazon DocumentDB to the pipeline: events
// {"eventSourceArn", "events": [{"event": ...}], "eventSource": "aws:docdb"},
// an ordered source of one lane (one invocation at a time, in arrival
// order: spec DOC-2), BatchSize 100 and a 500 ms window from the first
// record by default (DOC-5), events over 6 MB dropped and counted (DOC-7),
// no filtering (the engine refuses FilterCriteria for DocumentDB), and
// the function's errors retried until it succeeds (DOC-6: the engine
// refuses MaximumRetryAttempts, MaximumRecordAgeInSeconds, bisecting and
// destinations for DocumentDB, so the retry policy is infinite). Clusters
// come from --docdb-cluster ARN=URI, else RDS DescribeDBClusters;
// credentials from --secrets-file, else Secrets Manager.
//
// There is no create-time check: AWS's answer for a cluster, database or
// collection that does not exist is not recorded, and the poller reports
// each once the mapping runs (LastProcessingResult).
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:   esm.SourceDocumentDB,
		Delivery: source.Ordered,
		Envelope: func(m *esm.Mapping) payload.Envelope {
			return payload.DocumentDB(aws.ToString(m.Config.EventSourceArn))
		},
		Filter:   filter.SourceDocumentDB,
		Batching: source.Batching{BatchSize: 100, Window: 500 * time.Millisecond, FromFirstRecord: true},
		Oversize: source.OversizeDrop,
		Access: func(ctx context.Context, env *source.Env, c *esm.Config) error {
			if c.EventSourceArn == nil || !source.NamesSecrets(c) {
				return nil
			}
			e, err := EnvFor(env)
			if err != nil {
				return nil
			}
			uri, err := e.clusterURI(ctx, *c.EventSourceArn)
			if err != nil {
				return nil // the poller reports it, and checks again
			}
			return source.SecretTarget(ctx, env, c, Target(*c.EventSourceArn, uri))
		},
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			e, err := EnvFor(env)
			if err != nil {
				return nil, err
			}
			cfg, err := e.Config(ctx, m)
			if err != nil {
				return nil, err
			}
			if env.Log != nil {
				cfg.Log = env.Log.With("uuid", m.UUID)
			}
			// A store several workers share leases the change stream out:
			// one worker reads it, the others stand by.
			if l, ok := env.Store.(Leases); ok && env.Worker != "" {
				return OpenLeased(ctx, cfg, Lease{Leases: l, Worker: env.Worker, TTL: env.LeaseTTL})
			}
			return Open(ctx, cfg)
		},
		Rewind: Rewind,
		Flags: []source.Flag{
			{Name: FlagCluster, Usage: "`ARN=URI`: the connection string (mongodb://host:port[,host:port][/?options]) of the DocumentDB cluster with this ARN, instead of its RDS DescribeDBClusters endpoint; TLS is on unless the URI says tls=false, and its tlsCAFile and replicaSet options are honoured; repeatable"},
			{Name: FlagCAFile, Usage: "`PEM` bundle of the certificate authorities DocumentDB connections trust (DocumentDB's global-bundle.pem) when the cluster's URI names no tlsCAFile (default: the system's roots)"},
			{Name: FlagCheckpointInterval, Usage: "coalesce DocumentDB checkpoint writes: the latest resume token of each mapping is written at most once per `duration` (default 100ms); 0 writes each one before the batch is released (a crash then redelivers only the batch in flight)"},
		},
	}
}

// Env is what the poller of a mapping needs from esmd: where clusters are,
// what their credentials are, and where checkpoints go.
type Env struct {
	// Clusters maps cluster ARNs to connection strings (--docdb-cluster).
	Clusters map[string]string
	// CAFile is the CA bundle TLS trusts (--docdb-ca-file).
	CAFile string
	// CheckpointInterval coalesces checkpoint writes
	// (--docdb-checkpoint-interval).
	CheckpointInterval time.Duration
	// Describe finds the connection string of a cluster not in Clusters
	// (RDS DescribeDBClusters); nil when esmd has no way to.
	Describe func(ctx context.Context, clusterArn string) (string, error)
	// Secret returns the username and password of a BASIC_AUTH secret to
	// be sent to a cluster (secrets.Resolver.BasicAuth, which refuses a
	// cluster the secret's restriction does not allow).
	Secret func(ctx context.Context, secretArn string, to secrets.Target) (username, password string, err error)
	// Positions stores checkpoints (the embedded store).
	Positions Positions
}

// EnvFor is where DocumentDB mappings find their cluster (--docdb-cluster,
// else RDS DescribeDBClusters in the ARN's region), credentials
// (--secrets-file, else Secrets Manager) and checkpoint store.
func EnvFor(env *source.Env) (*Env, error) {
	clusters, err := ParseClusters(env.Flags[FlagCluster])
	if err != nil {
		return nil, err
	}
	interval, err := stream.CheckpointInterval(env, FlagCheckpointInterval)
	if err != nil {
		return nil, err
	}
	e := &Env{
		Clusters: clusters, CAFile: env.Flag(FlagCAFile), CheckpointInterval: interval,
		Describe: func(ctx context.Context, arn string) (string, error) {
			cfg := env.AWS.Copy()
			if a, ok := esm.ParseARN(arn); ok && a.Region != "" {
				cfg.Region = a.Region
			}
			return describeCluster(ctx, rds.NewFromConfig(cfg), arn)
		},
	}
	if env.Store != nil {
		e.Positions = env.Store
	}
	if env.Secrets != nil {
		e.Secret = env.Secrets.BasicAuth
	}
	return e, nil
}

// ParseClusters parses --docdb-cluster values, "ARN=URI".
func ParseClusters(values []string) (map[string]string, error) {
	out := make(map[string]string, len(values))
	for _, v := range values {
		arn, uri, ok := strings.Cut(v, "=")
		if !ok || arn == "" || uri == "" {
			return nil, fmt.Errorf("--%s %q: want ARN=mongodb://host:port", FlagCluster, v)
		}
		if !strings.HasPrefix(uri, "mongodb://") && !strings.HasPrefix(uri, "mongodb+srv://") {
			return nil, fmt.Errorf("--%s %q: the connection string must start with mongodb://", FlagCluster, v)
		}
		if _, err := connstring.Parse(uri); err != nil {
			return nil, fmt.Errorf("--%s %q: %w", FlagCluster, v, err)
		}
		out[arn] = uri
	}
	return out, nil
}

// ErrUnknownCluster: esmd does not know the cluster's endpoint.
var ErrUnknownCluster = errors.New("unknown DocumentDB cluster")

// clusterURI returns a cluster's connection string.
func (e *Env) clusterURI(ctx context.Context, arn string) (string, error) {
	if u, ok := e.Clusters[arn]; ok {
		return u, nil
	}
	if e.Describe == nil {
		return "", fmt.Errorf("%w: %s (give its endpoint with --%s ARN=mongodb://host:port)", ErrUnknownCluster, arn, FlagCluster)
	}
	u, err := e.Describe(ctx, arn)
	if err != nil {
		return "", fmt.Errorf("describe DocumentDB cluster %s: %w (or give its endpoint with --%s ARN=mongodb://host:port)", arn, err, FlagCluster)
	}
	return u, nil
}

// Config returns the poller configuration of a mapping: its cluster's
// connection string, DocumentDBEventSourceConfig, StartingPosition (and
// timestamp), the BASIC_AUTH credentials, and its UUID as the key of its
// checkpoint.
func (e *Env) Config(ctx context.Context, m *esm.Mapping) (Config, error) {
	c := &m.Config
	var cfg Config
	switch {
	case c.EventSourceArn == nil:
		return cfg, errors.New("documentdb: the mapping has no EventSourceArn")
	case c.DocumentDBEventSourceConfig == nil || c.DocumentDBEventSourceConfig.DatabaseName == nil:
		return cfg, errors.New("documentdb: the mapping has no DocumentDBEventSourceConfig.DatabaseName")
	case e.Positions == nil:
		return cfg, errors.New("documentdb: no checkpoint store")
	}
	uri, err := e.clusterURI(ctx, *c.EventSourceArn)
	if err != nil {
		return cfg, err
	}
	d := c.DocumentDBEventSourceConfig
	cfg = Config{
		URI: uri, CAFile: e.CAFile, Database: *d.DatabaseName,
		Mapping: m.UUID, Positions: e.Positions, CheckpointInterval: e.CheckpointInterval,
		EventSourceARN: *c.EventSourceArn, BatchSize: readBatch(m),
	}
	if d.CollectionName != nil {
		cfg.Collection = *d.CollectionName
	}
	if d.FullDocument != nil {
		cfg.FullDocument = *d.FullDocument
	}
	if c.StartingPosition != nil {
		cfg.StartingPosition = *c.StartingPosition
	}
	if ts := c.StartingPositionTimestamp; ts != nil {
		sec, frac := math.Modf(*ts)
		cfg.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	if arn := basicAuth(c); arn != "" {
		if e.Secret == nil {
			return cfg, fmt.Errorf("documentdb: no secrets resolver for BASIC_AUTH %s", arn)
		}
		if cfg.Username, cfg.Password, err = e.Secret(ctx, arn, Target(*c.EventSourceArn, uri)); err != nil {
			return cfg, source.Denied(fmt.Errorf("BASIC_AUTH secret: %w", err))
		}
	}
	return cfg, nil
}

// readBatch is the getMore batchSize of a mapping's stream: its BatchSize,
// at least 100 events. The server's own (as many events as fit in 16 MB)
// makes every read a 16 MB reply and as much again of encoded events,
// held until the last of them is invoked, for a function that takes a
// hundred at a time.
func readBatch(m *esm.Mapping) int32 {
	n := int64(100)
	if b := m.Config.BatchSize; b != nil {
		n = max(n, min(*b, 10000))
	}
	return int32(n)
}

// Target is where a mapping sends its BASIC_AUTH secret: the cluster's ARN
// and the hosts of its connection string (port 27017 when a host names
// none).
func Target(clusterArn, uri string) secrets.Target {
	t := secrets.Target{ARN: clusterArn}
	if cs, err := connstring.Parse(uri); err == nil {
		for _, h := range cs.Hosts {
			t.Endpoints = append(t.Endpoints, secrets.HostPort(h, "27017"))
		}
	}
	return t
}

func basicAuth(c *esm.Config) string {
	for _, s := range c.SourceAccessConfigurations {
		if s.Type != nil && *s.Type == "BASIC_AUTH" && s.URI != nil {
			return *s.URI
		}
	}
	return ""
}

// describeCluster returns the connection string of a DocumentDB cluster
// from RDS DescribeDBClusters (which takes the ARN as identifier): its
// cluster endpoint (the primary, where change streams are read) and port,
// in replica set rs0 (every DocumentDB cluster's), without retryable writes
// (DocumentDB has none). TLS is the poller's default.
func describeCluster(ctx context.Context, client *rds.Client, arn string) (string, error) {
	out, err := client.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: &arn})
	if err != nil {
		return "", err
	}
	if len(out.DBClusters) == 0 {
		return "", errors.New("no such cluster")
	}
	cl := out.DBClusters[0]
	if cl.Engine != nil && *cl.Engine != "docdb" {
		return "", fmt.Errorf("the cluster's engine is %s, not docdb", *cl.Engine)
	}
	if cl.Endpoint == nil || *cl.Endpoint == "" {
		return "", errors.New("the cluster has no endpoint (is it still being created?)")
	}
	port := int32(27017)
	if cl.Port != nil {
		port = *cl.Port
	}
	return "mongodb://" + net.JoinHostPort(*cl.Endpoint, strconv.Itoa(int(port))) + "/?replicaSet=rs0&retryWrites=false", nil
}
