package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

// TestServeRabbitMQEndToEnd drives esmd serve as a user does, with a real
// RabbitMQ broker and a real function (internal/testfn under the Runtime
// Interface Emulator, behind a proxy that records every event it is sent):
// mappings are created through the Lambda API with the AWS SDK, and each
// subtest checks one behaviour of issue 8 on its own queue. One broker, one
// RIE and one esmd serve for all of them.
func TestServeRabbitMQEndToEnd(t *testing.T) {
	testenv.Skip(t)
	e := newRMQE2E(t)

	// A message the function fails on, in a virtual host other than "/": the
	// whole batch is redelivered (redelivered=true) until the quorum queue's
	// delivery limit dead-letters it to the queue's DLX (spec MQ-4).
	t.Run("RedeliveryAndDeadLetteringInAVirtualHost", func(t *testing.T) {
		vh := testenv.RabbitMQVHost
		dlq := e.declare(t, vh, "dlq", nil)
		q := e.declare(t, vh, "poison", amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": int32(1),
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		id := e.create(t, vh, q, nil)
		poison := `{"testfn":{"mode":"error","errorMessage":"poison"}}`
		e.publish(t, vh, q, poison)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n, _ := e.depth(t, vh, dlq); n != 1 {
				return fmt.Errorf("%d messages dead-lettered", n)
			}
			return nil
		})
		got := e.fn.messages(q)
		if len(got) != 2 || got[0] != (rmqMsg{poison, false}) || got[1] != (rmqMsg{poison, true}) {
			t.Errorf("the function saw %+v, want the message, then once more redelivered", got)
		}
		if r := e.get(t, id).LastProcessingResult; aws.ToString(r) != "PROBLEM: Function call failed" {
			t.Errorf("after the failure, LastProcessingResult %q", aws.ToString(r))
		}
		// Messages the function takes are acked, and the mapping says OK.
		var bodies []string
		for i := range 25 {
			bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
		}
		e.publish(t, vh, q, bodies...)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 2+25 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			if r := aws.ToString(e.get(t, id).LastProcessingResult); r != "OK" {
				return fmt.Errorf("LastProcessingResult %q", r)
			}
			return nil
		})
		e.disableAndCheckAcked(t, id, vh, q)
	})

	// A backlog is invoked in batches of at most BatchSize; messages that
	// arrive on an idle queue within the batching window are invoked
	// together (spec MQ-2).
	t.Run("BatchingAndWindow", func(t *testing.T) {
		q := e.declare(t, "/", "batching", nil)
		var backlog []string
		for i := range 25 {
			backlog = append(backlog, fmt.Sprintf("m-%02d", i))
		}
		e.publish(t, "/", q, backlog...)
		id := e.create(t, "/", q, func(in *lambda.CreateEventSourceMappingInput) {
			in.BatchSize = aws.Int32(10)
			in.MaximumBatchingWindowInSeconds = aws.Int32(2)
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 25 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		sizes := e.fn.sizes(q)
		if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 5 {
			t.Errorf("a backlog of 25 with BatchSize 10 was invoked in batches of %v, want [10 10 5]", sizes)
		}
		// Three messages spaced out, all within the 2 s window that starts
		// with the first: one invocation.
		e.publishPaced(t, "/", q, 100*time.Millisecond, "late-0", "late-1", "late-2")
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 28 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		if sizes := e.fn.sizes(q)[3:]; len(sizes) != 1 {
			t.Errorf("3 messages within the batching window were invoked in batches of %v, want one batch", sizes)
		}
		e.disableAndCheckAcked(t, id, "/", q)
	})

	// FilterCriteria on the decoded data: only matching messages reach the
	// function, and the others are acked too (spec MQ-5).
	t.Run("FilterOnData", func(t *testing.T) {
		q := e.declare(t, "/", "filter", nil)
		id := e.create(t, "/", q, func(in *lambda.CreateEventSourceMappingInput) {
			in.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"data":{"kind":["keep"]}}`)}}}
		})
		var bodies, want []string
		for i := range 20 {
			kind := "drop"
			if i%3 == 0 {
				kind = "keep"
			}
			b := fmt.Sprintf(`{"kind":%q,"n":%d}`, kind, i)
			bodies = append(bodies, b)
			if kind == "keep" {
				want = append(want, b)
			}
		}
		// Data that is not JSON against a pattern on JSON data: MQ (and
		// Kafka) filter on the metadata alone then, so it is delivered
		// (spec 8, the table for Kafka value and MQ data).
		plain := "not JSON: filtered on metadata only"
		bodies, want = append(bodies, plain), append(want, plain)
		e.publish(t, "/", q, bodies...)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if got := e.fn.messages(q); len(got) != len(want) {
				return fmt.Errorf("the function saw %d messages, want %d: %v", len(got), len(want), got)
			}
			if n, _ := e.depth(t, "/", q); n != 0 {
				return fmt.Errorf("%d messages ready", n)
			}
			return nil
		})
		var got []string
		for _, m := range e.fn.messages(q) {
			got = append(got, m.Data)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the function saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		e.disableAndCheckAcked(t, id, "/", q)
	})

	// Credentials the broker refuses: Lambda disables the mapping with
	// EVENT_SOURCE_AUTHN_ERROR and says why (spec MQ-7).
	t.Run("WrongCredentialsDisableTheMapping", func(t *testing.T) {
		q := e.declare(t, testenv.RabbitMQVHost, "authn", nil)
		id := e.create(t, testenv.RabbitMQVHost, q, func(in *lambda.CreateEventSourceMappingInput) {
			in.SourceAccessConfigurations[0].URI = aws.String(e.badSecret)
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			m := e.get(t, id)
			if st := aws.ToString(m.State); st != "Disabled" {
				return fmt.Errorf("state %s", st)
			}
			if r := aws.ToString(m.StateTransitionReason); r != "EVENT_SOURCE_AUTHN_ERROR" {
				t.Errorf("StateTransitionReason %q", r)
			}
			if r := aws.ToString(m.LastProcessingResult); !strings.HasPrefix(r, "PROBLEM: ") || !strings.Contains(r, "authentication failed") {
				t.Errorf("LastProcessingResult %q", r)
			}
			return nil
		})
		if got := e.fn.messages(q); len(got) != 0 {
			t.Errorf("the function was invoked: %v", got)
		}
	})

	// The broker restarts while the mapping consumes a durable queue of
	// persistent messages: esmd reconnects by itself, what was not acked is
	// redelivered, and every message reaches the function and is acked.
	t.Run("BrokerRestartMidStream", func(t *testing.T) {
		q := e.declare(t, "/", "restart", nil)
		// Each batch takes the function a little while, so the restart
		// finds the mapping mid-stream.
		const n = 200
		var bodies []string
		for i := range n / 2 {
			bodies = append(bodies, fmt.Sprintf(`{"n":%d,"testfn":{"mode":"sleep","ms":20}}`, i))
		}
		e.publish(t, "/", q, bodies...)
		id := e.create(t, "/", q, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(5) })
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.distinct(q)); n < 20 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		e.b.Restart(t)
		bodies = bodies[:0]
		for i := n / 2; i < n; i++ {
			bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
		}
		e.publish(t, "/", q, bodies...)
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			if got := len(e.fn.distinct(q)); got != n {
				return fmt.Errorf("the function saw %d distinct messages of %d", got, n)
			}
			return nil
		})
		if got := len(e.fn.distinct(q)); got == n && len(e.fn.messages(q)) == n {
			t.Log("no message was redelivered: the restart found no batch in flight")
		}
		e.disableAndCheckAcked(t, id, "/", q)
	})
}

// rmqE2E is one esmd serve with RabbitMQ mappings on the test broker.
type rmqE2E struct {
	b                     *testenv.RabbitMQBroker
	fn                    *rmqFunction
	cl                    *lambda.Client
	broker                string // the broker's ARN
	goodSecret, badSecret string
}

func newRMQE2E(t *testing.T) *rmqE2E {
	t.Helper()
	e := &rmqE2E{b: testenv.RabbitMQ(t), fn: newRMQFunction(t, testenv.RIE(t)),
		broker:     "arn:aws:mq:us-east-1:000000000000:broker:e2e:b-0f0e0d0c-0000-4000-8000-000000000001",
		goodSecret: "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq-good",
		badSecret:  "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq-bad"}
	dir := t.TempDir()
	secrets, _ := json.Marshal(map[string]map[string]string{
		e.goodSecret: {"username": testenv.RabbitMQUser, "password": testenv.RabbitMQPassword},
		e.badSecret:  {"username": testenv.RabbitMQUser, "password": "wrong"},
	})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse([]string{"--mq-broker", e.broker + "=amqp://" + e.b.Addr, "--secrets-file", filepath.Join(dir, "secrets.json")}); err != nil {
		t.Fatal(err)
	}
	c.dataDir = filepath.Join(dir, "data")
	c.invokeMode = "rie"
	c.lambdaEndpoint = e.fn.URL
	addr, stop := serveWith(t, c)
	t.Cleanup(stop)
	e.cl = client(addr)
	return e
}

// create creates a mapping of a queue (BASIC_AUTH with the good secret,
// VIRTUAL_HOST unless "/") through the API and returns its UUID.
func (e *rmqE2E) create(t *testing.T, vhost, queue string, edit func(*lambda.CreateEventSourceMappingInput)) string {
	t.Helper()
	in := &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(e.broker), Queues: []string{queue},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(e.goodSecret)}}}
	if vhost != "/" {
		in.SourceAccessConfigurations = append(in.SourceAccessConfigurations,
			types.SourceAccessConfiguration{Type: types.SourceAccessTypeVirtualHost, URI: aws.String(vhost)})
	}
	return createMapping(t, e.cl, in, edit)
}

func (e *rmqE2E) get(t *testing.T, id string) *lambda.GetEventSourceMappingOutput {
	t.Helper()
	return getMapping(t, e.cl, id)
}

// disableAndCheckAcked disables a mapping and checks that its consumers are
// gone and the queue is empty: a delivery esmd had not acked would be ready
// again once its consumer's connection closed.
func (e *rmqE2E) disableAndCheckAcked(t *testing.T, id, vhost, queue string) {
	t.Helper()
	if _, err := e.cl.UpdateEventSourceMapping(context.Background(), &lambda.UpdateEventSourceMappingInput{UUID: aws.String(id), Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if st := aws.ToString(e.get(t, id).State); st != "Disabled" {
			return fmt.Errorf("state %s", st)
		}
		n, consumers := e.depth(t, vhost, queue)
		if consumers != 0 {
			return fmt.Errorf("%d consumers after disabling", consumers)
		}
		if n != 0 {
			return fmt.Errorf("%d messages back in the queue: they were never acked", n)
		}
		return nil
	})
}

// channel dials the broker afresh (it may have restarted since) and opens a
// channel; both close with the test.
func (e *rmqE2E) channel(t *testing.T, vhost string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(e.b.URL(vhost))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// declare declares a durable queue with a unique name from prefix; it is
// deleted when the test ends.
func (e *rmqE2E) declare(t *testing.T, vhost, prefix string, args amqp.Table) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%s-%d", prefix, time.Now().UnixNano())
	if _, err := e.channel(t, vhost).QueueDeclare(name, true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conn, err := amqp.Dial(e.b.URL(vhost)); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(name, false, false, false)
			}
			conn.Close()
		}
	})
	return name
}

// publish publishes persistent messages in order, each confirmed by the
// broker before the next.
func (e *rmqE2E) publish(t *testing.T, vhost, queue string, bodies ...string) {
	t.Helper()
	e.publishPaced(t, vhost, queue, 0, bodies...)
}

// publishPaced publishes like publish, waiting gap after each message but
// the last.
func (e *rmqE2E) publishPaced(t *testing.T, vhost, queue string, gap time.Duration, bodies ...string) {
	t.Helper()
	ch := e.channel(t, vhost)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, b := range bodies {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: []byte(b)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v", err)
		}
		if gap > 0 && i < len(bodies)-1 {
			time.Sleep(gap)
		}
	}
}

// depth returns a queue's ready messages and consumers.
func (e *rmqE2E) depth(t *testing.T, vhost, queue string) (messages, consumers int) {
	t.Helper()
	st, err := e.channel(t, vhost).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Messages, st.Consumers
}

// rmqFunction is a proxy in front of RIE that records the messages of every
// RabbitMQ event, by queue, before the function gets it.
type rmqFunction struct {
	*httptest.Server
	mu      sync.Mutex
	batches map[string][][]rmqMsg
}

type rmqMsg struct {
	Data        string
	Redelivered bool
}

func newRMQFunction(t *testing.T, rie string) *rmqFunction {
	target, err := url.Parse(rie)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &rmqFunction{batches: map[string][][]rmqMsg{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev events.RabbitMQEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not a RabbitMQ event: "+err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		for key, msgs := range ev.MessagesByQueue {
			q, _, _ := strings.Cut(key, "::")
			batch := make([]rmqMsg, 0, len(msgs))
			for _, m := range msgs {
				data, _ := base64.StdEncoding.DecodeString(m.Data)
				batch = append(batch, rmqMsg{string(data), m.Redelivered})
			}
			f.batches[q] = append(f.batches[q], batch)
		}
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// messages returns the messages of a queue the function was sent, in order.
func (f *rmqFunction) messages(queue string) []rmqMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []rmqMsg
	for _, b := range f.batches[queue] {
		out = append(out, b...)
	}
	return out
}

// sizes returns the sizes of a queue's invocations, in order.
func (f *rmqFunction) sizes(queue string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches[queue] {
		out = append(out, len(b))
	}
	return out
}

// distinct returns the distinct message bodies of a queue the function saw.
func (f *rmqFunction) distinct(queue string) map[string]bool {
	seen := map[string]bool{}
	for _, m := range f.messages(queue) {
		seen[m.Data] = true
	}
	return seen
}

// TestRabbitMQSIGKILLRestart kills the esmd process (SIGKILL: no acks, no
// clean close) while a RabbitMQ mapping is mid-stream and starts it again
// on the same data directory: the broker requeues what was unacked, the
// mapping resumes, and every message reaches the function and is acked
// (duplicates only for what was in flight at the kill).
func TestRabbitMQSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	b := testenv.RabbitMQ(t)
	bin := buildBinary(t)
	rec := newInvokeRecorder(rmqKeys)
	fn := httptest.NewServer(rec)
	defer fn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := amqp.Dial(b.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("sigkill-%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(q, false, false, false)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: fmt.Appendf(nil, "m-%03d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v", err)
		}
	}

	dir := t.TempDir()
	secret := "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq"
	secrets, _ := json.Marshal(map[string]map[string]string{secret: {"username": testenv.RabbitMQUser, "password": testenv.RabbitMQPassword}})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	broker := "arn:aws:mq:us-east-1:000000000000:broker:kill:b-1"
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--lambda-endpoint", fn.URL, "--function-check", "never",
		"--mq-broker", broker + "=amqp://" + b.Addr, "--secrets-file", filepath.Join(dir, "secrets.json")}
	cmd, addr := startBinary(t, bin, args...)
	_, err = client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(broker), Queues: []string{q}, BatchSize: aws.Int32(5),
		SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(secret)}}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n, _, _ := rec.count(); n < 10 {
			return fmt.Errorf("%d invocations", n)
		}
		return nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	_, before, _ := rec.count()
	if before >= n {
		t.Fatalf("all %d messages were done before the kill; the test needs some left", before)
	}

	startBinary(t, bin, args...)
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		if _, distinct, _ := rec.count(); distinct != n {
			return fmt.Errorf("%d of %d messages reached the function", distinct, n)
		}
		// Ready and unacknowledged: zero once every message was acked.
		out := b.Ctl(t, "list_queues", "-p", "/", "--quiet", "--no-table-headers", "name", "messages")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == q && f[1] != "0" {
				return fmt.Errorf("%s messages not acked", f[1])
			}
		}
		return nil
	})
	t.Logf("%d distinct messages had reached the function before the kill", before)
}

// rmqKeys names each message of a RabbitMQ event by its body.
func rmqKeys(body []byte) ([]string, error) {
	var ev events.RabbitMQEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	var keys []string
	for _, msgs := range ev.MessagesByQueue {
		for _, m := range msgs {
			data, _ := base64.StdEncoding.DecodeString(m.Data)
			keys = append(keys, string(data))
		}
	}
	return keys, nil
}

// TestDescribeBroker finds a broker's endpoint with Amazon MQ's
// DescribeBroker (answered here by a stand-in for the MQ API) when no
// --mq-broker names it.
func TestDescribeBroker(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/brokers/b-rabbit":
			_, _ = io.WriteString(w, `{"brokerId":"b-rabbit","engineType":"RABBITMQ","brokerInstances":[{"consoleURL":"https://b-rabbit.mq.us-east-1.amazonaws.com","endpoints":["amqps://b-rabbit.mq.us-east-1.amazonaws.com:5671"]}]}`)
		case "/v1/brokers/b-active":
			_, _ = io.WriteString(w, `{"brokerId":"b-active","engineType":"ACTIVEMQ","brokerInstances":[{"endpoints":["ssl://b-active-1.mq.us-east-1.amazonaws.com:61617"]}]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errorAttribute":"broker-id","message":"Can't find requested broker"}`)
		}
	}))
	defer srv.Close()
	env, err := rabbitmq.EnvFor(&source.Env{AWS: testenv.AWSConfig(srv.URL), Flags: map[string][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := env.Describe(ctx, "arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-rabbit")
	if err != nil || got != "amqps://b-rabbit.mq.us-east-1.amazonaws.com:5671" {
		t.Errorf("RabbitMQ broker: %q, %v", got, err)
	}
	if _, err := env.Describe(ctx, "arn:aws:mq:us-east-1:000000000000:broker:active:b-active"); err == nil || !strings.Contains(err.Error(), "ACTIVEMQ") {
		t.Errorf("ActiveMQ broker: %v", err)
	}
	if _, err := env.Describe(ctx, "arn:aws:mq:us-east-1:000000000000:broker:gone:b-gone"); err == nil {
		t.Error("missing broker: no error")
	}
	// --mq-broker wins over DescribeBroker.
	env, err = rabbitmq.EnvFor(&source.Env{AWS: testenv.AWSConfig(srv.URL), Flags: map[string][]string{
		"mq-broker": {"arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-rabbit=amqp://127.0.0.1:5672"}}})
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	cfg, err := env.Config(ctx, &esm.Config{EventSourceArn: str("arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-rabbit"), Queues: []string{"q"}}, "id")
	if err != nil || cfg.URL != "amqp://127.0.0.1:5672" || cfg.VHost != "/" || cfg.Queue != "q" {
		t.Errorf("config %+v, %v", cfg, err)
	}
	// An ActiveMQ broker's endpoints in --mq-broker (the flag is shared):
	// accepted, but a RabbitMQ poller refuses them.
	env, err = rabbitmq.EnvFor(&source.Env{Flags: map[string][]string{"mq-broker": {"arn=ssl://activemq:61617,stomp://activemq:61613"}}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := env.Config(ctx, &esm.Config{EventSourceArn: str("arn"), Queues: []string{"q"}}, "id"); err == nil {
		if _, err := rabbitmq.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "not amqp://") {
			t.Errorf("RabbitMQ poller on an ActiveMQ endpoint: %v", err)
		}
	}
}
