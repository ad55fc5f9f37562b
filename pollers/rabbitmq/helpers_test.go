package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// config returns a poller configuration for a queue of the shared broker,
// with short reconnect delays.
func config(b *testenv.RabbitMQBroker, vhost, queue string) rabbitmq.Config {
	return rabbitmq.Config{
		URL:      "amqp://" + b.Addr,
		Username: testenv.RabbitMQUser, Password: testenv.RabbitMQPassword,
		VHost: vhost, Queue: queue, BatchSize: 10, Name: "test",
		ReconnectDelay: 50 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond,
	}
}

// queue declares a new durable queue with a unique name and deletes it when
// the test ends.
func queue(t testing.TB, b *testenv.RabbitMQBroker, vhost string, args amqp.Table) string {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + hex.EncodeToString(rnd[:])
	ch := channel(t, b, vhost)
	if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
	t.Cleanup(func() {
		// A fresh connection: the broker may have restarted since.
		c, err := amqp.Dial(b.URL(vhost))
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_, _ = ch.QueueDelete(name, false, false, false)
		}
	})
	return name
}

// channel opens a channel as the test user; it is closed with the test.
func channel(t testing.TB, b *testenv.RabbitMQBroker, vhost string) *amqp.Channel {
	t.Helper()
	ch, err := b.Dial(t, vhost).Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// publisher publishes persistent messages to a queue with publisher
// confirms, so a published message is on the broker when publish returns.
type publisher struct {
	t     *testing.T
	b     *testenv.RabbitMQBroker
	vhost string
	ch    *amqp.Channel
}

func newPublisher(t *testing.T, b *testenv.RabbitMQBroker, vhost string) *publisher {
	return &publisher{t: t, b: b, vhost: vhost}
}

func (p *publisher) publish(queue string, msg amqp.Publishing) {
	p.t.Helper()
	// Retried for long enough to cover a broker restart. Errorf, not
	// Fatalf: tests publish from goroutines too.
	err := testenv.Poll(60*time.Second, func(context.Context) error {
		err := p.try(queue, msg)
		if err != nil {
			// The broker may be restarting: reconnect.
			p.ch = nil
		}
		return err
	})
	if err != nil {
		p.t.Errorf("publish to %s: %v", queue, err)
	}
}

func (p *publisher) try(queue string, msg amqp.Publishing) error {
	if p.ch == nil || p.ch.IsClosed() {
		c, err := amqp.Dial(p.b.URL(p.vhost))
		if err != nil {
			return err
		}
		p.t.Cleanup(func() { c.Close() })
		ch, err := c.Channel()
		if err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		p.ch = ch
	}
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, msg)
	if err != nil {
		return err
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return context.DeadlineExceeded
	}
	return nil
}

func (p *publisher) text(queue, body string) {
	p.t.Helper()
	p.publish(queue, amqp.Publishing{ContentType: "text/plain", Body: []byte(body)})
}

// message is the part of an encoded record the tests look at.
type message struct {
	Redelivered bool   `json:"redelivered"`
	Data        []byte `json:"data"`
}

func decode(t testing.TB, r source.Record) message {
	t.Helper()
	var m message
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("record %s: %v\n%s", r.ID, err, r.Data)
	}
	return m
}

func body(t testing.TB, r source.Record) string { return string(decode(t, r).Data) }

// counts returns a queue's ready and unacked-or-ready message count
// (passive declare reports ready messages only).
func ready(t *testing.T, b *testenv.RabbitMQBroker, vhost, queue string) int {
	t.Helper()
	c, err := amqp.Dial(b.URL(vhost))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// pollFor polls until cond says stop or the deadline passes.
func pollFor(t *testing.T, p interface {
	Poll(context.Context) ([]source.Record, error)
}, wait time.Duration, cond func([]source.Record) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if cond(recs) {
			return
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
