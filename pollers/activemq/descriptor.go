package activemq

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
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Descriptor describes Amazon MQ for ActiveMQ to the pipeline: the aws:mq
// event, a queue source (ACKed when done, NACKed when failed: the broker
// redelivers and dead-letters), BatchSize 100 and a 500 ms window from the
// first record by default, records over 6 MB dropped, the MQ filter on
// "data", and 5 lanes (invocations in flight). It shares the "mq" source
// and the --mq-broker flag with RabbitMQ (registered before it, so that it
// is asked first): it claims mappings whose broker's --mq-broker endpoints
// are not AMQP, or that DescribeBroker says run ActiveMQ.
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:   esm.SourceMQ,
		Delivery: source.Queue,
		// Spec MQ-3, across all workers (pipeline.Sharer).
		Concurrency: 5,
		Envelope:    func(m *esm.Mapping) payload.Envelope { return payload.ActiveMQ(aws.ToString(m.Config.EventSourceArn)) },
		Filter:      filter.SourceMQ,
		Batching:    source.Batching{BatchSize: 100, Window: 500 * time.Millisecond, FromFirstRecord: true, Linger: time.Millisecond},
		Oversize:    source.OversizeDrop,
		Claims: func(ctx context.Context, env *source.Env, cfg *esm.Config) (bool, error) {
			if cfg.EventSourceArn == nil {
				return false, nil
			}
			e := EnvFor(env)
			return e.Claims(ctx, *cfg.EventSourceArn), nil
		},
		Access: func(ctx context.Context, env *source.Env, c *esm.Config) error {
			if c.EventSourceArn == nil || !source.NamesSecrets(c) {
				return nil
			}
			eps, err := EnvFor(env).endpoints(ctx, *c.EventSourceArn)
			if err != nil {
				return nil // the poller reports it, and checks again
			}
			return source.SecretTarget(ctx, env, c, Target(*c.EventSourceArn, STOMPEndpoints(eps)))
		},
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			e := EnvFor(env)
			cfg, err := e.Config(ctx, &m.Config, m.UUID)
			if err != nil {
				return nil, err
			}
			cfg.Log = env.Log.With("uuid", m.UUID)
			return Open(ctx, cfg)
		},
	}
}

// Env is where ActiveMQ mappings find their broker and credentials.
type Env struct {
	// Brokers maps broker ARNs to their endpoints (--mq-broker
	// ARN=URL,URL,...), all of them, as listed.
	Brokers map[string][]string
	// Describe returns a broker's engine and every instance's endpoints
	// (Amazon MQ DescribeBroker); nil when esmd has no way to.
	Describe func(ctx context.Context, arn string) (engine string, endpoints []string, err error)
	// Secret returns the username and password of a BASIC_AUTH secret to
	// be sent to a broker (secrets.Resolver.BasicAuth, which refuses a
	// broker the secret's restriction does not allow).
	Secret func(ctx context.Context, arn string, to secrets.Target) (username, password string, err error)
}

// EnvFor makes the Env of esmd's flags (--mq-broker), AWS config and
// secrets.
func EnvFor(env *source.Env) *Env {
	e := &Env{Brokers: map[string][]string{}}
	for _, v := range env.Flags["mq-broker"] {
		arn, u, ok := strings.Cut(v, "=")
		if !ok {
			continue
		}
		e.Brokers[arn] = append(e.Brokers[arn], strings.Split(u, ",")...)
	}
	client := mq.NewFromConfig(env.AWS)
	e.Describe = func(ctx context.Context, arn string) (string, []string, error) {
		id := arn[strings.LastIndex(arn, ":")+1:]
		out, err := client.DescribeBroker(ctx, &mq.DescribeBrokerInput{BrokerId: &id})
		if err != nil {
			return "", nil, err
		}
		// The id alone finds the broker: the rest of the ARN, which a
		// secret's esmd:allowed-endpoints may match, must be its own.
		if got := aws.ToString(out.BrokerArn); got != "" && got != arn {
			return "", nil, fmt.Errorf("the broker %s is %s, not %s", id, got, arn)
		}
		var eps []string
		for _, in := range out.BrokerInstances {
			eps = append(eps, in.Endpoints...)
		}
		return string(out.EngineType), eps, nil
	}
	if env.Secrets != nil {
		e.Secret = env.Secrets.BasicAuth
	}
	return e
}

// Claims says whether a broker is an ActiveMQ one: its --mq-broker
// endpoints include no amqp:// or amqps:// one, or (without the flag)
// DescribeBroker says its engine is ACTIVEMQ. A broker DescribeBroker
// cannot describe is left to RabbitMQ's descriptor, which reports it.
func (e *Env) Claims(ctx context.Context, arn string) bool {
	if eps, ok := e.Brokers[arn]; ok {
		for _, u := range eps {
			u = strings.TrimSpace(u)
			if strings.HasPrefix(u, "amqp://") || strings.HasPrefix(u, "amqps://") {
				return false
			}
		}
		return true
	}
	if e.Describe == nil {
		return false
	}
	engine, _, err := e.Describe(ctx, arn)
	return err == nil && engine == string(mqtypes.EngineTypeActivemq)
}

// endpoints returns a broker's endpoints: --mq-broker's, else
// DescribeBroker's.
func (e *Env) endpoints(ctx context.Context, arn string) ([]string, error) {
	if eps, ok := e.Brokers[arn]; ok {
		return eps, nil
	}
	if e.Describe == nil {
		return nil, fmt.Errorf("activemq: unknown broker %s (give its endpoints with --mq-broker ARN=stomp://host:port)", arn)
	}
	_, eps, err := e.Describe(ctx, arn)
	if err != nil {
		return nil, fmt.Errorf("describe broker %s: %w", arn, err)
	}
	return eps, nil
}

// Target is where a mapping sends its BASIC_AUTH secret: the broker's ARN
// and its STOMP endpoints (port 61613, or 61614 for stomp+ssl, when an
// endpoint names none).
func Target(brokerArn string, stompEndpoints []string) secrets.Target {
	t := secrets.Target{ARN: brokerArn}
	for _, e := range stompEndpoints {
		port := "61613"
		if strings.HasPrefix(e, "stomp+ssl://") {
			port = "61614"
		}
		t.Endpoints = append(t.Endpoints, secrets.HostPort(e, port))
	}
	return t
}

// Config returns the poller configuration of a mapping: its broker's STOMP
// endpoints, Queues[0], the BASIC_AUTH credentials and BatchSize.
func (e *Env) Config(ctx context.Context, c *esm.Config, name string) (Config, error) {
	var cfg Config
	if c.EventSourceArn == nil {
		return cfg, errors.New("activemq: the mapping has no EventSourceArn")
	}
	if len(c.Queues) != 1 {
		return cfg, fmt.Errorf("activemq: the mapping has %d queues, want 1", len(c.Queues))
	}
	arn := *c.EventSourceArn
	eps, err := e.endpoints(ctx, arn)
	if err != nil {
		return cfg, err
	}
	cfg = Config{Endpoints: STOMPEndpoints(eps), Queue: c.Queues[0], Name: name, EventSourceARN: arn}
	if len(cfg.Endpoints) == 0 {
		return cfg, fmt.Errorf("activemq: broker %s has no stomp:// or stomp+ssl:// endpoint among %s", arn, strings.Join(eps, ","))
	}
	if c.BatchSize != nil {
		cfg.BatchSize = int(*c.BatchSize)
	}
	for _, s := range c.SourceAccessConfigurations {
		if s.Type != nil && *s.Type == "BASIC_AUTH" && s.URI != nil {
			if e.Secret == nil {
				return cfg, fmt.Errorf("activemq: no secrets resolver for BASIC_AUTH %s", *s.URI)
			}
			var err error
			if cfg.Username, cfg.Password, err = e.Secret(ctx, *s.URI, Target(arn, cfg.Endpoints)); err != nil {
				return cfg, source.Denied(fmt.Errorf("BASIC_AUTH secret: %w", err))
			}
		}
	}
	return cfg, nil
}
