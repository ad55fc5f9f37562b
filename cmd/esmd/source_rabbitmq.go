package main

import (
	"context"
	"fmt"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/rabbitmq"
)

func init() {
	sourcePollers[esm.SourceMQ] = openRabbitMQ
	sourceFlags = append(sourceFlags, struct{ name, usage string }{"mq-broker",
		"`ARN=URL`: the AMQP endpoint (amqp://host:port, or amqps://host:port for TLS) of an Amazon MQ for RabbitMQ broker; repeatable"})
}

// rabbitmqEnv is where RabbitMQ mappings find their broker (--mq-broker)
// and credentials (--secrets-file, else Secrets Manager).
//
// Brokers not given with --mq-broker are not looked up with Amazon MQ's
// DescribeBroker yet: their mappings report the missing endpoint in
// LastProcessingResult.
func rabbitmqEnv(env *SourceEnv) (*rabbitmq.Env, error) {
	brokers, err := rabbitmq.ParseBrokers(env.Flags["mq-broker"])
	if err != nil {
		return nil, err
	}
	return &rabbitmq.Env{
		Brokers: brokers,
		Secret: func(ctx context.Context, arn string) (string, string, error) {
			s, err := env.Secrets.Get(ctx, arn)
			if err != nil {
				return "", "", err
			}
			if s.Username() == "" {
				return "", "", fmt.Errorf("secret %s has no username", arn)
			}
			return s.Username(), s.Password(), nil
		},
	}, nil
}

// openRabbitMQ opens the poller of an Amazon MQ mapping. Amazon MQ
// mappings are RabbitMQ mappings here: ActiveMQ brokers have no poller,
// and --mq-broker accepts only AMQP endpoints.
func openRabbitMQ(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	e, err := rabbitmqEnv(env)
	if err != nil {
		return nil, err
	}
	cfg, err := e.Config(ctx, &m.Config, m.UUID)
	if err != nil {
		return nil, err
	}
	cfg.Log = env.Log.With("uuid", m.UUID)
	p, err := rabbitmq.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return p, nil
}
