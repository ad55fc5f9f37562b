package rabbitmq_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

func open(t *testing.T, cfg rabbitmq.Config) *rabbitmq.Poller {
	t.Helper()
	p, err := rabbitmq.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return p
}

// requeueDelay is the conformance pollers' delay before a failed delivery
// is nacked (Config.RequeueDelay and MaxRequeueDelay).
const requeueDelay = 2 * time.Second

func TestConformance(t *testing.T) {
	b := testenv.RabbitMQ(t)
	pollertest.Run(t, pollertest.Harness{
		// A queue has no keys or order across redeliveries; unfinished
		// deliveries come back as soon as the poller's connection closes,
		// failed ones after the requeue delay (requeueDelay below), those
		// handed back with ErrStopped at once.
		Features: pollertest.Features{Queue: true, Redelivery: requeueDelay},
		Setup: func(t *testing.T) pollertest.Source {
			q := queue(t, b, "/", nil)
			pub := newPublisher(t, b, "/")
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller {
					// AWS's default BatchSize: the suite reads 40 records
					// before it finishes any, and a consumer never holds
					// more than its prefetch.
					cfg := config(b, "/", q)
					cfg.BatchSize = 100
					// A fixed failure delay, long enough to tell from
					// the at-once requeue of a stop.
					cfg.RequeueDelay, cfg.MaxRequeueDelay = requeueDelay, requeueDelay
					p := open(t, cfg)
					t.Cleanup(func() { p.Close() })
					return p
				},
				Produce: func(t *testing.T, key, body string) { pub.text(q, body) },
				Body:    func(t *testing.T, r source.Record) string { return body(t, r) },
			}
		},
	})
}

// TestMessageShape publishes a message with every basic property set and
// one with none, and checks the records byte for byte against the shape of
// spec 1.7, then round-trips them through aws-lambda-go's RabbitMQEvent.
func TestMessageShape(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	pub.publish(q, amqp.Publishing{
		ContentType: "text/plain", ContentEncoding: "gzip",
		Headers:      amqp.Table{"header1": "value1", "numberInHeader": int32(10), "flag": true, "raw": []byte{0xff, 1}},
		DeliveryMode: amqp.Transient, Priority: 34, CorrelationId: "corr", ReplyTo: "reply", Expiration: "60000",
		MessageId: "m-1", Timestamp: time.Unix(2021, 0), Type: "order", UserId: testenv.RabbitMQUser, AppId: "app",
		Body: []byte(`{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}`),
	})
	pub.publish(q, amqp.Publishing{Body: []byte("x")})

	p := open(t, config(b, "/", q))
	defer p.Close()
	var recs []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { recs = append(recs, r...); return len(recs) >= 2 })

	want := []string{
		`{"basicProperties":{"contentType":"text/plain","contentEncoding":"gzip","headers":{"flag":true,` +
			`"header1":{"bytes":[118,97,108,117,101,49]},"numberInHeader":10,"raw":{"bytes":[-1,1]}},` +
			`"deliveryMode":1,"priority":34,"correlationId":"corr","replyTo":"reply","expiration":"60000",` +
			`"messageId":"m-1","timestamp":"Jan 1, 1970, 12:33:41 AM","type":"order","userId":"esmd","appId":"app",` +
			`"clusterId":null,"bodySize":43},"redelivered":false,"data":"` + b64(`{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}`) + `"}`,
		`{"basicProperties":{"contentType":null,"contentEncoding":null,"headers":null,"deliveryMode":2,"priority":null,` +
			`"correlationId":null,"replyTo":null,"expiration":null,"messageId":null,"timestamp":null,"type":null,` +
			`"userId":null,"appId":null,"clusterId":null,"bodySize":1},"redelivered":false,"data":"eA=="}`,
	}
	for i, r := range recs {
		if string(r.Data) != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, r.Data, want[i])
		}
		if r.Lane != q || r.Group != q+"::/" || r.ID == "" {
			t.Errorf("record %d: lane %q group %q id %q", i, r.Lane, r.Group, r.ID)
		}
	}
	if recs[0].ID == recs[1].ID {
		t.Errorf("two deliveries share the ID %q", recs[0].ID)
	}

	// The event as the function receives it.
	arn := "arn:aws:mq:us-east-1:000000000000:broker:b:b-1"
	bld := payload.NewBuilder(payload.RabbitMQ(arn))
	for _, r := range recs {
		bld.Add(r.Group, r.Data)
	}
	var ev events.RabbitMQEvent
	if err := json.Unmarshal(bld.Bytes(), &ev); err != nil {
		t.Fatalf("%v\n%s", err, bld.Bytes())
	}
	msgs := ev.MessagesByQueue[q+"::/"]
	if ev.EventSource != "aws:rmq" || ev.EventSourceARN != arn || len(msgs) != 2 {
		t.Fatalf("event %+v", ev)
	}
	bp := msgs[0].BasicProperties
	if bp.ContentType != "text/plain" || *bp.ContentEncoding != "gzip" || bp.DeliveryMode != 1 || bp.Priority != 34 ||
		*bp.CorrelationID != "corr" || *bp.ReplyTo != "reply" || bp.Expiration != "60000" || *bp.MessageID != "m-1" ||
		bp.Timestamp != "Jan 1, 1970, 12:33:41 AM" || *bp.Type != "order" || bp.UserID != "esmd" || *bp.AppID != "app" ||
		bp.ClusterID != nil || bp.BodySize != 43 || bp.Headers["numberInHeader"] != float64(10) {
		t.Errorf("basic properties %+v", bp)
	}
	if msgs[0].Data != b64(`{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}`) || msgs[0].Redelivered {
		t.Errorf("message %+v", msgs[0])
	}
	if bp := msgs[1].BasicProperties; bp.ContentEncoding != nil || bp.Headers != nil || bp.DeliveryMode != 2 || bp.MessageID != nil {
		t.Errorf("empty properties %+v", bp)
	}
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// TestFailedIsRedelivered: a nacked delivery comes back with redelivered
// true; a done one is acked and the queue ends empty.
func TestFailedIsRedelivered(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	pub.text(q, "one")
	p := open(t, config(b, "/", q))
	defer p.Close()
	var first []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { first = append(first, r...); return len(first) >= 1 })
	if decode(t, first[0]).Redelivered {
		t.Fatal("first delivery is redelivered")
	}
	if err := p.Failed(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	var again []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { again = append(again, r...); return len(again) >= 1 })
	if m := decode(t, again[0]); !m.Redelivered || string(m.Data) != "one" {
		t.Fatalf("after a nack: %s", again[0].Data)
	}
	if err := p.Done(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := ready(t, b, "/", q); n != 0 {
		t.Fatalf("%d messages left after the ack", n)
	}
}

// TestAcksWaitForEarlierDeliveries: a delivery done before an earlier one
// is acked on its own at once (the ack of a filtered-out record must hold
// even if the earlier one is never finished), the others cumulatively, and
// a poller closed in between gets only the unfinished one back.
func TestAcksWaitForEarlierDeliveries(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	for i := range 3 {
		pub.text(q, fmt.Sprint(i))
	}
	p := open(t, config(b, "/", q))
	var recs []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { recs = append(recs, r...); return len(recs) >= 3 })
	// 0 unfinished, 2 done, 1 done.
	if err := p.Done(context.Background(), recs[2:]); err != nil {
		t.Fatal(err)
	}
	if err := p.Done(context.Background(), recs[1:2]); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = open(t, config(b, "/", q))
	defer p.Close()
	var again []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { again = append(again, r...); return len(again) >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	more, _ := p.Poll(ctx)
	cancel()
	again = append(again, more...)
	if len(again) != 1 || body(t, again[0]) != "0" {
		t.Fatalf("want only the unfinished delivery back, got %d", len(again))
	}
	if err := p.Done(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := ready(t, b, "/", q); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

func TestVirtualHostAndTLS(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, testenv.RabbitMQVHost, nil)
	newPublisher(t, b, testenv.RabbitMQVHost).text(q, "hello")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CA)
	cfg := config(b, testenv.RabbitMQVHost, q)
	cfg.URL = "amqps://" + b.TLSAddr
	cfg.TLS = &tls.Config{RootCAs: roots, ServerName: "localhost"}
	p := open(t, cfg)
	defer p.Close()
	var recs []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { recs = append(recs, r...); return len(recs) >= 1 })
	if recs[0].Group != q+"::"+testenv.RabbitMQVHost || body(t, recs[0]) != "hello" {
		t.Fatalf("record %+v", recs[0])
	}
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// TestCheckAndOpenErrors: Check and Open name the cause of a refusal; Open
// wraps refused credentials (EVENT_SOURCE_AUTHN_ERROR) and refused access
// (EVENT_SOURCE_AUTHZ_ERROR) in an *esm.DisableError, on which the pipeline
// disables the mapping (spec MQ-7), and nothing else.
func TestCheckAndOpenErrors(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	ctx := context.Background()
	if err := rabbitmq.Check(ctx, config(b, "/", q)); err != nil {
		t.Fatalf("existing queue: %v", err)
	}
	// A user with no permission in any virtual host.
	const noPerm = "esmd-no-permissions"
	b.Ctl(t, "add_user", noPerm, "pw")
	t.Cleanup(func() { b.Ctl(t, "delete_user", noPerm) })
	cases := []struct {
		name   string
		edit   func(*rabbitmq.Config)
		want   error
		reason string // of the *esm.DisableError Open returns; "" for none
	}{
		{"missing queue", func(c *rabbitmq.Config) { c.Queue = "no-such-queue" }, rabbitmq.ErrQueueNotFound, ""},
		{"missing vhost", func(c *rabbitmq.Config) { c.VHost = "no-such-vhost" }, rabbitmq.ErrVHostNotFound, ""},
		// RabbitMQ closes a connection that failed to log in silently
		// after 3 s (amqp091 does not ask for the explicit close), so
		// there is one such case.
		{"wrong password", func(c *rabbitmq.Config) { c.Password = "wrong" }, rabbitmq.ErrAuthentication, "EVENT_SOURCE_AUTHN_ERROR"},
		{"no permission in the vhost", func(c *rabbitmq.Config) { c.Username, c.Password = noPerm, "pw" }, rabbitmq.ErrAuthorization, "EVENT_SOURCE_AUTHZ_ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(b, "/", q)
			tc.edit(&cfg)
			if err := rabbitmq.Check(ctx, cfg); !errors.Is(err, tc.want) {
				t.Errorf("Check: %v, want %v", err, tc.want)
			}
			p, err := rabbitmq.Open(ctx, cfg)
			if !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want %v", err, tc.want)
			}
			var de *esm.DisableError
			switch {
			case tc.reason == "" && errors.As(err, &de):
				t.Errorf("Open: %v disables the mapping (%s)", err, de.Reason)
			case tc.reason != "" && !errors.As(err, &de):
				t.Errorf("Open: %v does not disable the mapping", err)
			case tc.reason != "" && de.Reason != tc.reason:
				t.Errorf("Open: disables the mapping with %s, want %s", de.Reason, tc.reason)
			}
			if p != nil {
				p.Close()
			}
		})
	}
}

// TestScalesConsumersWithBacklog: a deep queue gets more consumers (each
// with a prefetch of BatchSize), and an empty one goes back to one; every
// message is delivered and acked.
func TestScalesConsumersWithBacklog(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	ch := channel(t, b, "/")
	const n = 2000
	for i := range n {
		if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: fmt.Append(nil, i)}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if r := ready(t, b, "/", q); r != n {
			return fmt.Errorf("%d ready", r)
		}
		return nil
	})
	cfg := config(b, "/", q)
	cfg.ScaleInterval = 20 * time.Millisecond
	cfg.MaxConsumers = 3
	p := open(t, cfg)
	defer p.Close()
	seen := map[string]bool{}
	most := 0
	ctx := context.Background()
	pollFor(t, p, 30*time.Second, func(recs []source.Record) bool {
		most = max(most, p.Consumers())
		for _, r := range recs {
			seen[body(t, r)] = true
		}
		// Slow enough for the backlog to be measured a few times.
		time.Sleep(2 * time.Millisecond)
		if err := p.Done(ctx, recs); err != nil {
			t.Fatal(err)
		}
		return len(seen) == n
	})
	if most < 2 {
		t.Errorf("consumers never scaled past %d", most)
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if c := p.Consumers(); c != 1 {
			return fmt.Errorf("%d consumers on an empty queue", c)
		}
		return nil
	})
	p.Close()
	if r := ready(t, b, "/", q); r != 0 {
		t.Fatalf("%d messages left", r)
	}
}

// TestBrokerRestartLosesNothing restarts the broker while a poller reads a
// durable queue: the poller reconnects by itself, deliveries it had not
// acked come back, and every message is delivered and acked.
func TestBrokerRestartLosesNothing(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	const n = 60
	for i := range n / 2 {
		pub.text(q, fmt.Sprintf("m-%03d", i))
	}
	cfg := config(b, "/", q)
	cfg.BatchSize = 100 // the held deliveries stay within one prefetch
	p := open(t, cfg)
	defer p.Close()
	seen := map[string]bool{}
	ctx := context.Background()
	var held []source.Record
	pollFor(t, p, 10*time.Second, func(recs []source.Record) bool {
		for _, r := range recs {
			seen[body(t, r)] = true
		}
		// Ack the first half, hold the rest unacked over the restart.
		for _, r := range recs {
			if len(held) > 0 || len(seen) > n/4 {
				held = append(held, r)
			} else if err := p.Done(ctx, []source.Record{r}); err != nil {
				t.Fatal(err)
			}
		}
		return len(seen) == n/2
	})
	b.Restart(t)
	// The held deliveries belong to a closed channel: acking them does
	// nothing, and the broker delivers them again.
	if err := p.Done(ctx, held); err != nil {
		t.Fatal(err)
	}
	heldBodies := map[string]bool{}
	for _, r := range held {
		heldBodies[body(t, r)] = true
	}
	for i := n / 2; i < n; i++ {
		pub.text(q, fmt.Sprintf("m-%03d", i))
	}
	after := map[string]bool{}
	pollFor(t, p, 30*time.Second, func(recs []source.Record) bool {
		for _, r := range recs {
			after[body(t, r)] = true
			seen[body(t, r)] = true
		}
		if err := p.Done(ctx, recs); err != nil {
			t.Fatal(err)
		}
		for h := range heldBodies {
			if !after[h] {
				return false
			}
		}
		return len(seen) == n
	})
	p.Close()
	if r := ready(t, b, "/", q); r != 0 {
		t.Fatalf("%d messages left after acking everything", r)
	}
}

// TestHeaderValues: every AMQP field-table type is written as AWS's
// Gson-serialized Java client values are.
func TestHeaderValues(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	newPublisher(t, b, "/").publish(q, amqp.Publishing{Body: []byte("h"), Headers: amqp.Table{
		"str":    "ab",
		"bytes":  []byte{0x80, 0x7f},
		"i8":     int8(-3),
		"i16":    int16(300),
		"i64":    int64(1) << 40,
		"f32":    float32(1.5),
		"f64":    float64(-0.25),
		"bool":   false,
		"dec":    amqp.Decimal{Scale: 2, Value: 1234},
		"ts":     time.Unix(2021, 0),
		"void":   nil,
		"nested": amqp.Table{"z": int32(1), "a": "x"},
		"list":   []interface{}{"y", int32(2), amqp.Table{"k": true}},
	}})
	p := open(t, config(b, "/", q))
	defer p.Close()
	var recs []source.Record
	pollFor(t, p, 10*time.Second, func(r []source.Record) bool { recs = append(recs, r...); return len(recs) >= 1 })
	var got struct {
		BasicProperties struct {
			Headers json.RawMessage `json:"headers"`
		} `json:"basicProperties"`
	}
	if err := json.Unmarshal(recs[0].Data, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"bool":false,"bytes":{"bytes":[-128,127]},"dec":12.34,"f32":1.5,"f64":-0.25,"i16":300,"i64":1099511627776,"i8":-3,` +
		`"list":[{"bytes":[121]},2,{"k":true}],"nested":{"a":{"bytes":[120]},"z":1},"str":{"bytes":[97,98]},` +
		`"ts":"Jan 1, 1970, 12:33:41 AM","void":null}`
	if string(got.BasicProperties.Headers) != want {
		t.Errorf("headers\n got %s\nwant %s", got.BasicProperties.Headers, want)
	}
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// TestRecoversFromClosedConnectionAndDeletedQueue: a connection the broker
// closes (an operator's close_connection) and a consumer the broker
// cancels (the queue deleted, then declared again) are both recovered
// without a new poller.
func TestRecoversFromClosedConnectionAndDeletedQueue(t *testing.T) {
	b := testenv.RabbitMQ(t)
	q := queue(t, b, "/", nil)
	pub := newPublisher(t, b, "/")
	cfg := config(b, "/", q)
	cfg.Name = "recover-" + q
	p := open(t, cfg)
	defer p.Close()
	get := func(body string) {
		t.Helper()
		pollFor(t, p, 20*time.Second, func(recs []source.Record) bool {
			if err := p.Done(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if got := decode(t, r); string(got.Data) == body {
					return true
				}
			}
			return false
		})
	}
	pub.text(q, "before")
	get("before")

	b.Ctl(t, "close_all_connections", "-p", "/", "test: closed by the operator")
	pub.text(q, "after-close")
	get("after-close")

	ch := channel(t, b, "/")
	if _, err := ch.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pub.text(q, "after-redeclare")
	get("after-redeclare")
}
