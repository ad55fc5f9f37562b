package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/esm"
)

// kafkaTarget is a Kafka topic per round, on an in-process broker (kfake)
// or on the brokers of --bootstrap-servers.
type kafkaTarget struct {
	cluster    *kfake.Cluster // nil with external brokers
	seeds      []string
	cl         *kgo.Client
	partitions int
	topic      string
}

func newKafka(_ context.Context, cfg *Config) (*kafkaTarget, error) {
	t := &kafkaTarget{seeds: cfg.KafkaBootstrap, partitions: cfg.Partitions}
	if len(t.seeds) == 0 {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("in-process Kafka: %w", err)
		}
		t.cluster, t.seeds = c, c.ListenAddrs()
	}
	linger := 5 * time.Millisecond
	if cfg.Rate > 0 {
		linger = 0 // a record's produce time is taken before Produce
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(t.seeds...), kgo.ProducerLinger(linger),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.MaxBufferedRecords(100000),
		kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Close()
		return nil, err
	}
	t.cl = cl
	return t, nil
}

func (t *kafkaTarget) Prepare(ctx context.Context, round string) error {
	t.topic = "esmd-bench-" + round
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t.topic, int32(t.partitions), 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30000
	resp, err := req.RequestWith(ctx, t.cl)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", t.topic, err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.topic, err)
		}
	}
	return nil
}

func (t *kafkaTarget) Produce(ctx context.Context, bodies [][]byte) error {
	var wg sync.WaitGroup
	var once sync.Once
	var perr error
	wg.Add(len(bodies))
	for _, b := range bodies {
		t.cl.Produce(ctx, &kgo.Record{Topic: t.topic, Value: b}, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { perr = err })
			}
			wg.Done()
		})
	}
	wg.Wait()
	return perr
}

func (t *kafkaTarget) Mapping() *esm.Config {
	return &esm.Config{
		Topics: []string{t.topic}, StartingPosition: ptr("TRIM_HORIZON"),
		SelfManagedEventSource: &esm.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": t.seeds}},
		// AWS requires the VPC of an unauthenticated cluster; esmd
		// accepts it and connects directly.
		SourceAccessConfigurations: []esm.SourceAccessConfiguration{{Type: ptr("VPC_SUBNET"), URI: ptr("subnet:subnet-bench")}},
	}
}

func (t *kafkaTarget) Raw() RawSpec {
	return RawSpec{Endpoints: t.seeds, Name: t.topic, Partitions: t.partitions}
}

func (t *kafkaTarget) Filter() string { return `{"value":{"kind":["match"]}}` }

func (t *kafkaTarget) Close() {
	if t.cl != nil {
		t.cl.Close()
	}
	if t.cluster != nil {
		t.cluster.Close()
	}
}

// bootstrapString is how a Kafka event names its brokers.
func bootstrapString(seeds []string) string { return strings.Join(seeds, ",") }
