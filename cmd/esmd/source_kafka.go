package main

import (
	"context"

	kafkasvc "github.com/aws/aws-sdk-go-v2/service/kafka"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/kafka"
)

func init() {
	sourcePollers[esm.SourceKafka] = openKafka
	sourcePollers[esm.SourceMSK] = openKafka
	sourceFlags = append(sourceFlags, struct{ name, usage string }{"msk-cluster",
		"bootstrap brokers of an Amazon MSK cluster, ARN=host:port[,host:port] (repeatable; other clusters are looked up with kafka:GetBootstrapBrokers)"})
}

// openKafka starts the poller of an MSK or self-managed Kafka mapping.
func openKafka(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	clusters, err := kafka.ParseClusters(env.Flags["msk-cluster"])
	if err != nil {
		return nil, err
	}
	cfg, err := kafka.ConfigFor(ctx, m, kafka.Env{Secrets: env.Secrets, Clusters: clusters, Log: env.Log.With("uuid", m.UUID),
		MSK: kafkasvc.NewFromConfig(env.AWS), Credentials: env.AWS.Credentials})
	if err != nil {
		return nil, err
	}
	return kafka.New(ctx, cfg)
}
