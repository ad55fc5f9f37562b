package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/mq"
	mqtypes "github.com/aws/aws-sdk-go-v2/service/mq/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Descriptor describes Amazon MQ for RabbitMQ to the pipeline: events
// grouped by "<queue>::<vhost>", a queue source (acked when done, requeued
// when failed), BatchSize 100 and a 500 ms window from the first record by
// default, and the create-time virtual host and queue check. Brokers come
// from --mq-broker ARN=URL, else Amazon MQ's DescribeBroker; credentials
// from --secrets-file, else Secrets Manager.
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:   esm.SourceMQ,
		Delivery: source.Queue,
		// Spec MQ-3, across all workers (pipeline.Sharer).
		Concurrency: 1,
		Envelope:    func(m *esm.Mapping) payload.Envelope { return payload.RabbitMQ(aws.ToString(m.Config.EventSourceArn)) },
		Filter:      filter.SourceMQ,
		// Deliveries come one at a time: a batch that is not full waits
		// 1 ms for more even with a window of 0, so that the pipeline is
		// not woken per message.
		Batching: source.Batching{BatchSize: 100, Window: 500 * time.Millisecond, FromFirstRecord: true, Linger: time.Millisecond},
		Oversize: source.OversizeDrop,
		Check: func(ctx context.Context, env *source.Env, cfg *esm.Config) error {
			e, err := EnvFor(env)
			if err != nil {
				return err
			}
			return e.CheckSource(ctx, esm.SourceMQ, cfg)
		},
		Access: func(ctx context.Context, env *source.Env, cfg *esm.Config) error {
			e, err := EnvFor(env)
			if err != nil {
				return nil
			}
			return e.CheckAccess(ctx, env, cfg)
		},
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			e, err := EnvFor(env)
			if err != nil {
				return nil, err
			}
			cfg, err := e.Config(ctx, &m.Config, m.UUID)
			if err != nil {
				return nil, err
			}
			cfg.Log = env.Log.With("uuid", m.UUID)
			return Open(ctx, cfg)
		},
		Flags: []source.Flag{{Name: "mq-broker",
			Usage: "`ARN=URL[,URL...]`: the endpoints of an Amazon MQ broker: RabbitMQ's AMQP endpoint (amqp://host:port, or amqps://host:port for TLS), or ActiveMQ's endpoints as DescribeBroker lists them (ssl://host:61617,stomp+ssl://host:61614,...; esmd uses stomp:// and stomp+ssl://, and fails over between several); repeatable"}},
	}
}

// EnvFor is where RabbitMQ mappings find their broker (--mq-broker, else
// Amazon MQ's DescribeBroker) and credentials (--secrets-file, else Secrets
// Manager).
func EnvFor(env *source.Env) (*Env, error) {
	brokers, err := ParseBrokers(env.Flags["mq-broker"])
	if err != nil {
		return nil, err
	}
	client := mq.NewFromConfig(env.AWS)
	e := &Env{
		Brokers: brokers,
		Describe: func(ctx context.Context, arn string) (string, error) {
			return describeBroker(ctx, client, arn)
		},
	}
	if env.Secrets != nil {
		e.Secret = env.Secrets.BasicAuth
	}
	return e, nil
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
	// The id alone finds the broker: the rest of the ARN (name, region,
	// account), which a secret's esmd:allowed-endpoints may match, must be
	// the broker's own.
	if got := aws.ToString(out.BrokerArn); got != "" && got != arn {
		return "", fmt.Errorf("the broker %s is %s, not %s", id, got, arn)
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
