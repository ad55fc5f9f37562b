package activemq

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var queues atomic.Int64

// newQueue names a queue of its own for a test.
func newQueue(t *testing.T) string {
	return fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, queues.Add(1))
}

func config(b *testenv.ActiveMQBroker, q string) Config {
	return Config{Endpoints: []string{"stomp://" + b.STOMPAddr}, Username: testenv.ActiveMQUser,
		Password: testenv.ActiveMQPassword, Queue: q, EventSourceARN: "arn:aws:mq:us-east-1:000000000000:broker:test:b-1"}
}

func open(t *testing.T, cfg Config) *Poller {
	t.Helper()
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// send sends a persistent text message (no content-length) or, with
// bytes, a bytes message.
func send(t *testing.T, c *stomp.Conn, q string, body []byte, bytes bool, hdr ...string) {
	t.Helper()
	opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
	if !bytes {
		opts = append(opts, stomp.SendOpt.NoContentLength)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		opts = append(opts, stomp.SendOpt.Header(hdr[i], hdr[i+1]))
	}
	if err := c.Send("/queue/"+q, "", body, opts...); err != nil {
		t.Fatal(err)
	}
}

type msgJSON struct {
	MessageID     string            `json:"messageID"`
	MessageType   string            `json:"messageType"`
	DeliveryMode  int               `json:"deliveryMode"`
	ReplyTo       *string           `json:"replyTo"`
	Type          *string           `json:"type"`
	Expiration    string            `json:"expiration"`
	Priority      int               `json:"priority"`
	CorrelationID *string           `json:"correlationId"`
	Redelivered   bool              `json:"redelivered"`
	Destination   map[string]string `json:"destination"`
	Data          string            `json:"data"`
	Timestamp     int64             `json:"timestamp"`
	BrokerInTime  int64             `json:"brokerInTime"`
	BrokerOutTime int64             `json:"brokerOutTime"`
	Properties    map[string]string `json:"properties"`
}

func decode(t *testing.T, r source.Record) msgJSON {
	t.Helper()
	var m msgJSON
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("record %s: %v: %s", r.ID, err, r.Data)
	}
	return m
}

func body(t *testing.T, r source.Record) string {
	b, err := base64.StdEncoding.DecodeString(decode(t, r).Data)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// redelivery is how long a NACKed message takes to come back: the broker's
// redelivery delay (1 s; about 1.5 s measured) and some slack.
const redelivery = 5 * time.Second

func TestConformance(t *testing.T) {
	b := testenv.ActiveMQ(t)
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Queue: true, Cumulative: true, Redelivery: redelivery},
		Setup: func(t *testing.T) pollertest.Source {
			q := newQueue(t)
			c := b.Dial(t)
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller {
					cfg := config(b, q)
					return open(t, cfg)
				},
				Produce: func(t *testing.T, key, body string) { send(t, c, q, []byte(body), false) },
				Body:    body,
			}
		},
	})
}

func poll(t *testing.T, p *Poller, n int) []source.Record {
	t.Helper()
	var out []source.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

// TestMessageShape sends a text and a bytes message with every JMS header
// and two properties and checks the records field by field against spec
// 1.6, then through aws-lambda-go's ActiveMQEvent.
func TestMessageShape(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	c := b.Dial(t)
	exp := time.Now().Add(time.Hour).UnixMilli()
	send(t, c, q, []byte("ABC:AAAA"), false, "correlation-id", "myJMSCoID", "priority", "7",
		"expires", fmt.Sprint(exp), "reply-to", "/queue/replies", "type", "MyType", "myCustomProperty", "value", "index", "1")
	send(t, c, q, []byte{0, 1, 2, 0xff, 'b'}, true)
	p := open(t, config(b, q))
	before := time.Now().Add(-time.Minute).UnixMilli()
	recs := poll(t, p, 2)
	text, bin := decode(t, recs[0]), decode(t, recs[1])
	str := func(s *string) string {
		if s == nil {
			return "<null>"
		}
		return *s
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"messageType", text.MessageType, "jms/text-message"},
		{"deliveryMode", text.DeliveryMode, 2},
		{"replyTo", str(text.ReplyTo), "/queue/replies"},
		{"type", str(text.Type), "MyType"},
		{"expiration", text.Expiration, fmt.Sprint(exp)},
		{"priority", text.Priority, 7},
		{"correlationId", str(text.CorrelationID), "myJMSCoID"},
		{"redelivered", text.Redelivered, false},
		{"destination", text.Destination["physicalName"], q},
		{"data", text.Data, base64.StdEncoding.EncodeToString([]byte("ABC:AAAA"))},
		{"properties", fmt.Sprint(text.Properties), "map[index:1 myCustomProperty:value]"},
		{"bytes messageType", bin.MessageType, "jms/bytes-message"},
		{"bytes data", bin.Data, base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff, 'b'})},
		{"bytes replyTo", str(bin.ReplyTo), "<null>"},
		{"bytes type", str(bin.Type), "<null>"},
		{"bytes correlationId", str(bin.CorrelationID), "<null>"},
		{"bytes expiration", bin.Expiration, "0"},
		{"bytes priority", bin.Priority, 4},
		{"bytes properties", len(bin.Properties), 0},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, m := range []msgJSON{text, bin} {
		if m.MessageID == "" || m.Timestamp < before || m.BrokerInTime != m.Timestamp || m.BrokerOutTime < m.Timestamp {
			t.Errorf("id %q timestamp %d brokerInTime %d brokerOutTime %d", m.MessageID, m.Timestamp, m.BrokerInTime, m.BrokerOutTime)
		}
	}
	// The whole event through aws-lambda-go.
	env := Descriptor().Envelope(&esm.Mapping{Config: esm.Config{EventSourceArn: &[]string{"arn:aws:mq:us-east-1:000000000000:broker:test:b-1"}[0]}})
	ev := env.Append(nil, "", [][]byte{recs[0].Data, recs[1].Data})
	// aws-lambda-go declares expiration an int64 where AWS's example (spec
	// 1.6) has a string, "60000": unquote it for aws-lambda-go only.
	ev = regexp.MustCompile(`"expiration":"(\d+)"`).ReplaceAll(ev, []byte(`"expiration":$1`))
	var got events.ActiveMQEvent
	if err := json.Unmarshal(ev, &got); err != nil {
		t.Fatalf("%v: %s", err, ev)
	}
	if got.EventSource != "aws:mq" || len(got.Messages) != 2 || got.Messages[0].Destination.PhysicalName != q ||
		got.Messages[0].Properties["myCustomProperty"] != "value" || got.Messages[1].MessageType != "jms/bytes-message" ||
		got.Messages[0].CorrelationID != "myJMSCoID" || got.Messages[0].Priority != 7 {
		t.Errorf("aws-lambda-go ActiveMQEvent: %+v", got)
	}
	if err := p.Ack(context.Background(), recs, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFailedGoesToDLQ: a message NACKed on every delivery comes back with
// redelivered:true, 6 times, then is in ActiveMQ.DLQ (spec MQ-4).
func TestFailedGoesToDLQ(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	c := b.Dial(t)
	send(t, c, q, []byte("poison-"+q), false)
	p := open(t, config(b, q))
	for i := range 1 + testenv.ActiveMQRedeliveries {
		recs := poll(t, p, 1)
		if m := decode(t, recs[0]); m.Redelivered != (i > 0) {
			t.Fatalf("delivery %d: redelivered %v", i+1, m.Redelivered)
		}
		if err := p.Ack(context.Background(), recs, source.NewBatchError(nil).Failed(0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	dlq := open(t, config(b, testenv.ActiveMQDLQ))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		recs, err := dlq.Poll(ctx)
		if err != nil {
			t.Fatalf("not in the DLQ: %v", err)
		}
		_ = dlq.Ack(ctx, recs, nil)
		for _, r := range recs {
			if body(t, r) == "poison-"+q {
				return
			}
		}
	}
}

// TestWrongPassword: refused credentials disable the mapping.
func TestWrongPassword(t *testing.T) {
	b := testenv.ActiveMQ(t)
	cfg := config(b, newQueue(t))
	cfg.Password = "wrong"
	_, err := Open(context.Background(), cfg)
	var de *esm.DisableError
	if !errors.As(err, &de) || de.Reason != ReasonAuthN {
		t.Fatalf("Open: %v, want a DisableError %s", err, ReasonAuthN)
	}
}

// TestFailover: the poller follows the slave when the master dies, and a
// dead first endpoint is skipped.
func TestFailover(t *testing.T) {
	pair := testenv.ActiveMQPair(t)
	q := newQueue(t)
	cfg := config(pair[0], q)
	cfg.Endpoints = []string{"stomp://" + pair[0].STOMPAddr, "stomp://" + pair[1].STOMPAddr}
	cfg.MaxReconnectDelay = time.Second
	p := open(t, cfg)
	c, err := stomp.Dial("tcp", pair[0].STOMPAddr, stomp.ConnOpt.Login(testenv.ActiveMQUser, testenv.ActiveMQPassword))
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, q, []byte("before"), false)
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	recs := poll(t, p, 1)
	if err := p.Ack(context.Background(), recs, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill %s, slave %s", pair[0].STOMPAddr, pair[1].STOMPAddr)
	pair[0].Kill(t)
	pair[1].WaitReady(t, 30*time.Second)
	t.Logf("slave ready")
	c2 := pair[1].Dial(t)
	send(t, c2, q, []byte("after"), false)
	// "before" may come again: its ACK may have died with the master.
	for seen := false; !seen; {
		recs = poll(t, p, 1)
		for _, r := range recs {
			switch got := body(t, r); got {
			case "after":
				seen = true
			case "before":
			default:
				t.Fatalf("after failover got %q", got)
			}
		}
		_ = p.Ack(context.Background(), recs, nil)
	}
	pair[0].Start(t) // back as the slave
}

// TestIdleConnectionStays: an idle poller keeps its connection (no
// reconnection every heart-beat timeout) and still gets a message sent
// after 20 s.
func TestIdleConnectionStays(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s")
	}
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	p := open(t, config(b, q))
	p.mu.Lock()
	s := p.sess
	p.mu.Unlock()
	time.Sleep(20 * time.Second)
	if s.dead.Load() {
		t.Fatal("the idle connection was dropped")
	}
	send(t, b.Dial(t), q, []byte("late"), false)
	if got := body(t, poll(t, p, 1)[0]); got != "late" {
		t.Fatalf("got %q", got)
	}
}
