package bench

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/esm"
)

// rabbitTarget is a RabbitMQ queue per round on the broker of --broker.
type rabbitTarget struct {
	b     *brokerURL
	conn  *amqp.Connection
	ch    *amqp.Channel
	queue string
}

func newRabbitMQ(_ context.Context, cfg *Config) (*rabbitTarget, error) {
	b, err := parseBrokerURL(cfg.MQBroker, "amqp", "amqps")
	if err != nil {
		return nil, err
	}
	conn, err := amqp.Dial(cfg.MQBroker)
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("RabbitMQ channel: %w", err)
	}
	return &rabbitTarget{b: b, conn: conn, ch: ch}, nil
}

func (t *rabbitTarget) Prepare(_ context.Context, round string) error {
	t.queue = "esmd-bench-" + round
	if _, err := t.ch.QueueDeclare(t.queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue: %w", err)
	}
	return nil
}

// Produce publishes persistent messages and waits for the broker's
// confirms.
func (t *rabbitTarget) Produce(ctx context.Context, bodies [][]byte) error {
	confirms := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		c, err := t.ch.PublishWithDeferredConfirmWithContext(ctx, "", t.queue, false, false,
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: b})
		if err != nil {
			return err
		}
		confirms = append(confirms, c)
	}
	for _, c := range confirms {
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("RabbitMQ refused message %d", c.DeliveryTag)
		}
	}
	return nil
}

func (t *rabbitTarget) Mapping() *esm.Config { return t.b.mqMapping(t.queue) }

func (t *rabbitTarget) EsmdFlags(dir string) ([]string, error) {
	return t.b.esmdFlags(dir, t.b.scheme+"://"+t.b.host)
}

func (t *rabbitTarget) Raw() RawSpec {
	return RawSpec{Endpoints: []string{t.b.scheme + "://" + t.b.user + ":" + t.b.pass + "@" + t.b.host + "/" + vhostPath(t.b.vhost)},
		Name: t.queue, Arn: mqBrokerARN, VHost: t.b.vhost}
}

func (t *rabbitTarget) Filter() string { return `{"data":{"kind":["match"]}}` }

func (t *rabbitTarget) Close() {
	if t.conn != nil {
		t.conn.Close()
	}
}

// vhostPath is the path of a vhost in an AMQP URL ("/" is %2F... or
// empty).
func vhostPath(v string) string {
	if v == "/" {
		return ""
	}
	return v
}
