package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

// TestCreateTimeChecks creates mappings through an esm.Engine whose MQ
// runner is a rabbitmq.CheckingRunner: a missing virtual host or queue is
// refused with an InvalidParameterValueException; wrong credentials and
// unknown brokers are accepted (AWS reports those once the mapping runs).
func TestCreateTimeChecks(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, testenv.RabbitMQVHost, nil)
	broker := "arn:aws:mq:us-east-1:000000000000:broker:checks:b-1"
	good, bad := "arn:aws:secretsmanager:us-east-1:000000000000:secret:good", "arn:aws:secretsmanager:us-east-1:000000000000:secret:bad"
	env := &rabbitmq.Env{
		Brokers: map[string]string{broker: "amqp://" + b.Addr},
		Secret: func(_ context.Context, arn string, _ secrets.Target) (string, string, error) {
			if arn == good {
				return testenv.RabbitMQUser, testenv.RabbitMQPassword, nil
			}
			return testenv.RabbitMQUser, "wrong", nil
		},
	}
	idle := esm.RunnerFunc(func(ctx context.Context, _ *esm.Mapping, _ esm.Reporter) error { <-ctx.Done(); return nil })
	ctx := context.Background()
	e, err := esm.New(ctx, esm.WithRunner(esm.SourceMQ, checkingRunner{Runner: idle, env: env}))
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	defer e.Close(ctx)
	str := func(s string) *string { return &s }
	n := 0
	create := func(brokerArn, secret, vhost, queue string) error {
		n++ // a different function each time, so no mapping duplicates another
		cfg := &esm.Config{FunctionName: str(fmt.Sprintf("f%d", n)), EventSourceArn: str(brokerArn), Queues: []string{queue},
			SourceAccessConfigurations: []esm.SourceAccessConfiguration{{Type: str("BASIC_AUTH"), URI: str(secret)}}}
		if vhost != "" {
			cfg.SourceAccessConfigurations = append(cfg.SourceAccessConfigurations, esm.SourceAccessConfiguration{Type: str("VIRTUAL_HOST"), URI: str(vhost)})
		}
		_, err := e.Create(ctx, cfg)
		return err
	}
	if err := create(broker, good, testenv.RabbitMQVHost, q); err != nil {
		t.Fatalf("existing queue: %v", err)
	}
	refused := []struct{ name, vhost, queue, message string }{
		{"missing queue", testenv.RabbitMQVHost, "nope", "The queue nope does not exist in the virtual host esmd-vh of the broker " + broker + "."},
		{"queue in another vhost", "", q, "The queue " + q + " does not exist in the virtual host / of the broker " + broker + "."},
		{"missing vhost", "nope-vh", q, "The virtual host nope-vh does not exist on the broker " + broker + "."},
	}
	for _, tc := range refused {
		err := create(broker, good, tc.vhost, tc.queue)
		var ee *esm.Error
		if !errors.As(err, &ee) || ee.Type != esm.ErrTypeInvalidParameterValue || ee.Status != http.StatusBadRequest || ee.Message != tc.message {
			t.Errorf("%s: %v, want InvalidParameterValueException %q", tc.name, err, tc.message)
		}
	}
	if err := create(broker, bad, testenv.RabbitMQVHost, q); err != nil {
		t.Errorf("wrong credentials refused at create: %v", err)
	}
	if err := create("arn:aws:mq:us-east-1:000000000000:broker:unknown:b-2", good, "", q); err != nil {
		t.Errorf("unknown broker refused at create: %v", err)
	}
}

// TestPollFailsWhenBrokerStaysDown: a broker that stays away longer than
// MaxDowntime turns into a Poll error (the pipeline reports it and opens
// the poller again); a short outage is absorbed by reconnecting.
func TestPollFailsWhenBrokerStaysDown(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	cfg := config(b, "/", q)
	cfg.MaxDowntime = 300 * time.Millisecond
	p := open(t, cfg)
	defer p.Close()
	b.Stop(t)
	defer b.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for err == nil {
		var recs []source.Record
		recs, err = p.Poll(ctx)
		if len(recs) > 0 {
			t.Fatalf("records from a stopped broker: %d", len(recs))
		}
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "broker unreachable") {
		t.Fatalf("Poll: %v", err)
	}
	b.Start(t)
	p2 := open(t, cfg) // the pipeline's next attempt
	p2.Close()
}

// checkingRunner is an esm.Runner that checks RabbitMQ sources when a
// mapping is created, as the pipeline Runner does through the descriptor.
type checkingRunner struct {
	esm.Runner
	env *rabbitmq.Env
}

func (r checkingRunner) CheckSource(ctx context.Context, src esm.Source, c *esm.Config) error {
	return r.env.CheckSource(ctx, src, c)
}
