package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/mq"
	mqtypes "github.com/aws/aws-sdk-go-v2/service/mq/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/rabbitmq"
)

func init() {
	sourcePollers[esm.SourceMQ] = openRabbitMQ
	sourceRunners[esm.SourceMQ] = func(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
		renv, err := rabbitmqEnv(env)
		if err != nil {
			return nil, err
		}
		return rabbitmq.CheckingRunner{Runner: r, Env: renv}, nil
	}
	sourceFlags = append(sourceFlags, struct{ name, usage string }{"mq-broker",
		"`ARN=URL`: the AMQP endpoint (amqp://host:port, or amqps://host:port for TLS) of an Amazon MQ for RabbitMQ broker; repeatable"})
}

// rabbitmqEnv is where RabbitMQ mappings find their broker (--mq-broker,
// else Amazon MQ's DescribeBroker) and credentials (--secrets-file, else
// Secrets Manager).
func rabbitmqEnv(env *SourceEnv) (*rabbitmq.Env, error) {
	brokers, err := rabbitmq.ParseBrokers(env.Flags["mq-broker"])
	if err != nil {
		return nil, err
	}
	client := mq.NewFromConfig(env.AWS)
	return &rabbitmq.Env{
		Brokers: brokers,
		Describe: func(ctx context.Context, arn string) (string, error) {
			return describeBroker(ctx, client, arn)
		},
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

// describeBroker returns the AMQPS endpoint of an Amazon MQ for RabbitMQ
// broker, as AWS's poller finds it: DescribeBroker's first instance
// endpoint with the amqps scheme (amqps://b-<id>.mq.<region>.amazonaws.com:5671).
func describeBroker(ctx context.Context, client *mq.Client, arn string) (string, error) {
	// DescribeBroker takes the broker id, the ARN's last field.
	id := arn[strings.LastIndex(arn, ":")+1:]
	out, err := client.DescribeBroker(ctx, &mq.DescribeBrokerInput{BrokerId: &id})
	if err != nil {
		return "", err
	}
	if out.EngineType != "" && out.EngineType != mqtypes.EngineTypeRabbitmq {
		return "", fmt.Errorf("the broker's engine is %s: esmd reads RabbitMQ brokers only", out.EngineType)
	}
	for _, in := range out.BrokerInstances {
		for _, e := range in.Endpoints {
			if strings.HasPrefix(e, "amqps://") || strings.HasPrefix(e, "amqp://") {
				return e, nil
			}
		}
	}
	return "", errors.New("the broker has no AMQP endpoint (is it still being created?)")
}
