package kafka

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kafkasvc "github.com/aws/aws-sdk-go-v2/service/kafka"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// MSKDescriptor describes Amazon MSK mappings (EventSourceArn
// arn:aws:kafka:...) to the pipeline.
func MSKDescriptor() *source.Descriptor { return descriptor(esm.SourceMSK) }

// SelfManagedDescriptor describes self-managed Apache Kafka mappings
// (SelfManagedEventSource) to the pipeline.
func SelfManagedDescriptor() *source.Descriptor { return descriptor(esm.SourceKafka) }

// descriptor: events grouped by "<topic>-<partition>", ordered
// partitions, BatchSize 100 and a 500 ms window from the first record by
// default, partial responses naming {partition, offset}, KafkaBatchInfo,
// KAF-10's retry cap, and kafka://topic OnFailure destinations in the
// mapping's own cluster.
func descriptor(src esm.Source) *source.Descriptor {
	return &source.Descriptor{
		Source:           src,
		Delivery:         source.Ordered,
		Envelope:         envelope,
		Filter:           filter.SourceKafka,
		Batching:         source.Batching{BatchSize: 100, Window: defaultWindow, FromFirstRecord: true},
		Failures:         Failures,
		FailureInfo:      failureInfo,
		MaxRetryAttempts: maxRetryAttempts,
		Access: func(ctx context.Context, env *source.Env, c *esm.Config) error {
			if !source.NamesSecrets(c) {
				return nil
			}
			e, err := envFor(env, "")
			if err != nil {
				return nil
			}
			to, ok := accessTarget(ctx, e, src, c)
			if !ok {
				return nil
			}
			return source.SecretTarget(ctx, env, c, to)
		},
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			cfg, err := configFor(ctx, env, m)
			if err != nil {
				return nil, err
			}
			cfg.InstanceID = InstanceID(env.Worker, m.UUID)
			return New(ctx, cfg)
		},
		Rewind: Rewind,
		Destination: func(ctx context.Context, env *source.Env, m *esm.Mapping, dest string) (destination.Sender, bool, error) {
			topic, ok := strings.CutPrefix(dest, "kafka://")
			if !ok {
				return nil, false, nil
			}
			cfg, err := configFor(ctx, env, m)
			if err != nil {
				return nil, true, err
			}
			p, err := NewProducer(ctx, cfg)
			if err != nil {
				return nil, true, err
			}
			s, err := destination.New("kafka://"+topic, m.UUID, destination.Clients{Kafka: p})
			if err != nil {
				p.Close()
				return nil, true, err
			}
			return closingSender{Sender: s, close: p.Close}, true, nil
		},
		Flags: []source.Flag{{Name: "msk-cluster",
			Usage: "bootstrap brokers of an Amazon MSK cluster, ARN=host:port[,host:port] (repeatable; other clusters are looked up with kafka:GetBootstrapBrokers)"}},
	}
}

// InstanceID returns a worker's group instance id for a mapping
// (Config.InstanceID): stable across the worker's restarts, different for
// every worker and mapping; "" (a dynamic member) without a worker id.
func InstanceID(worker, mapping string) string {
	if worker == "" {
		return ""
	}
	return "esmd-" + worker + "-" + mapping
}

// closingSender is a destination sender that owns its producer.
type closingSender struct {
	destination.Sender
	close func()
}

// Close closes the producer.
func (s closingSender) Close() error {
	s.close()
	return nil
}

// configFor reads the source's flags and translates the mapping.
func configFor(ctx context.Context, env *source.Env, m *esm.Mapping) (Config, error) {
	e, err := envFor(env, m.UUID)
	if err != nil {
		return Config{}, err
	}
	return ConfigFor(ctx, m, e)
}

// envFor is the Env of esmd's flags, secrets and AWS configuration.
func envFor(env *source.Env, uuid string) (Env, error) {
	clusters, err := ParseClusters(env.Flags["msk-cluster"])
	if err != nil {
		return Env{}, err
	}
	log := env.Log
	if log != nil && uuid != "" {
		log = log.With("uuid", uuid)
	}
	e := Env{Clusters: clusters, Log: log, MSK: kafkasvc.NewFromConfig(env.AWS), Credentials: env.AWS.Credentials}
	if env.Secrets != nil {
		e.Secrets = env.Secrets
	}
	return e, nil
}

// accessTarget is where a mapping would send its secrets, as ConfigFor
// finds it: its bootstrap servers, or its MSK cluster's ARN and brokers
// (--msk-cluster, else GetBootstrapBrokers). ok is false when that cannot be
// told now (the cluster cannot be looked up): the poller checks again
// before it connects.
func accessTarget(ctx context.Context, env Env, src esm.Source, c *esm.Config) (secrets.Target, bool) {
	var seeds []string
	switch src {
	case esm.SourceKafka:
		if s := c.SelfManagedEventSource; s != nil {
			seeds = s.Endpoints["KAFKA_BOOTSTRAP_SERVERS"]
		}
	case esm.SourceMSK:
		arn := aws.ToString(c.EventSourceArn)
		seeds = env.Clusters[arn]
		if len(seeds) == 0 && env.MSK != nil {
			sacs, err := secretConfigs(c)
			if err != nil {
				return secrets.Target{}, false
			}
			var cfg Config
			if err := mskBrokers(ctx, env, arn, &cfg, sacs.clientCert, sacs.sasl); err != nil {
				return secrets.Target{}, false
			}
			seeds = cfg.Seeds
		}
	}
	return target(src, c, seeds), true
}

// envelope is the event envelope of a Kafka mapping: MSK events carry the
// cluster's ARN, self-managed ones do not.
func envelope(m *esm.Mapping) payload.Envelope {
	servers := ""
	if s := m.Config.SelfManagedEventSource; s != nil {
		servers = strings.Join(s.Endpoints["KAFKA_BOOTSTRAP_SERVERS"], ",")
	}
	if m.Source == esm.SourceKafka {
		return payload.SelfManagedKafka(servers)
	}
	arn := aws.ToString(m.Config.EventSourceArn)
	return payload.MSK(arn, servers)
}

// maxRetryAttempts is KAF-10: with infinite retries and an OnFailure
// destination, Lambda caps Kafka retries at 10.
func maxRetryAttempts(m *esm.Mapping, n int64) int64 {
	if d := m.Config.DestinationConfig; n < 0 && d != nil && d.OnFailure != nil &&
		d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" {
		return 10
	}
	return n
}

// Failures reads Kafka's partial batch response, whose itemIdentifier is
// {"partition":"<topic>-<n>","offset":<n>}: a record is named by its Group
// and its Seq (the offset).
func Failures(body []byte, recs []source.Record) (*source.BatchError, error) {
	index := make(map[Item]int, len(recs))
	for i, r := range recs {
		off, err := strconv.ParseInt(r.Seq, 10, 64)
		if err == nil {
			index[Item{Partition: r.Group, Offset: off}] = i
		}
	}
	bad, err := ParseBatchResponse(body, func(k Item) bool { _, ok := index[k]; return ok })
	if err != nil || len(bad) == 0 {
		return nil, err
	}
	be := source.NewBatchError(nil)
	for _, k := range bad {
		be.Failed(index[k], nil)
	}
	return be, nil
}

// failureInfo builds the KafkaBatchInfo (BatchInfo) of discarded records:
// one recordsInfo entry per topic-partition.
func failureInfo(m *esm.Mapping, _ string, recs []source.Record, eventSize int) destination.BatchInfo {
	servers := ""
	if s := m.Config.SelfManagedEventSource; s != nil {
		servers = strings.Join(s.Endpoints["KAFKA_BOOTSTRAP_SERVERS"], ",")
	}
	arn := ""
	if m.Config.EventSourceArn != nil && m.Source != esm.SourceKafka {
		arn = *m.Config.EventSourceArn
	}
	info := &BatchInfo{BatchSize: len(recs), EventSourceARN: arn, BootstrapServers: servers, PayloadSize: eventSize}
	for _, r := range recs {
		off, _ := strconv.ParseInt(r.Seq, 10, 64)
		n := len(info.RecordsInfo)
		if n == 0 || info.RecordsInfo[n-1].Partition != r.Group {
			info.RecordsInfo = append(info.RecordsInfo, PartitionInfo{Partition: r.Group,
				FirstRecordOffset: off, FirstRecordTimestamp: r.Arrival})
			n++
		}
		info.RecordsInfo[n-1].LastRecordOffset = off
		info.RecordsInfo[n-1].LastRecordTimestamp = r.Arrival
	}
	return info
}

// defaultWindow is MaximumBatchingWindowInSeconds' default for Kafka.
const defaultWindow = 500 * time.Millisecond
