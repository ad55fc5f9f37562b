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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/esmd/esmd/internal/testenv"
)

// TestServeActiveMQEndToEnd drives esmd serve as a user does, with a real
// ActiveMQ broker (internal/testenv) and a real function (internal/testfn
// under the Runtime Interface Emulator, behind a proxy that records every
// event): mappings are created through the Lambda API, and the broker is
// given with --mq-broker as DescribeBroker lists an ActiveMQ broker's
// endpoints (an OpenWire one esmd skips, then STOMP). Issue 15.
func TestServeActiveMQEndToEnd(t *testing.T) {
	testenv.Skip(t)
	e := newAMQE2E(t)

	// A text and a bytes message with JMS headers and properties: the event
	// is aws:mq, field by field as spec 1.6 has it.
	t.Run("TextAndBytesMessagesShape", func(t *testing.T) {
		q := e.queue("shape")
		c := e.b.Dial(t)
		e.send(t, c, q, []byte(`{"kind":"text"}`), false, "correlation-id", "myJMSCoID", "priority", "7", "type", "MyType",
			"reply-to", "/queue/replies", "myCustomProperty", "value", "index", "1")
		e.send(t, c, q, []byte{0, 1, 2, 0xff}, true)
		e.create(t, q, nil)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 2 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		ev := e.fn.event(q, 0)
		if ev["eventSource"] != "aws:mq" || ev["eventSourceArn"] != e.broker {
			t.Errorf("eventSource %v, eventSourceArn %v", ev["eventSource"], ev["eventSourceArn"])
		}
		msgs := e.fn.messages(q)
		text, bin := msgs[0], msgs[1]
		want := map[string]any{"messageType": "jms/text-message", "deliveryMode": 2.0, "replyTo": "/queue/replies",
			"type": "MyType", "expiration": "0", "priority": 7.0, "correlationId": "myJMSCoID", "redelivered": false,
			"data": base64.StdEncoding.EncodeToString([]byte(`{"kind":"text"}`))}
		for k, v := range want {
			if text[k] != v {
				t.Errorf("text %s = %#v, want %#v", k, text[k], v)
			}
		}
		if d, _ := text["destination"].(map[string]any); d["physicalName"] != q {
			t.Errorf("destination %v", text["destination"])
		}
		if p, _ := text["properties"].(map[string]any); p["myCustomProperty"] != "value" || p["index"] != "1" {
			t.Errorf("properties %v", text["properties"])
		}
		for _, k := range []string{"messageID", "timestamp", "brokerInTime", "brokerOutTime"} {
			if text[k] == nil {
				t.Errorf("text has no %s", k)
			}
		}
		if bin["messageType"] != "jms/bytes-message" || bin["data"] != base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff}) ||
			bin["replyTo"] != nil || bin["correlationId"] != nil {
			t.Errorf("bytes message %v", bin)
		}
	})

	// A backlog is invoked in batches of at most BatchSize; messages within
	// the window are invoked together.
	t.Run("BatchingAndWindow", func(t *testing.T) {
		q := e.queue("batching")
		c := e.b.Dial(t)
		for i := range 25 {
			e.send(t, c, q, fmt.Appendf(nil, "m-%02d", i), false)
		}
		e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) {
			in.BatchSize = aws.Int32(10)
			in.MaximumBatchingWindowInSeconds = aws.Int32(2)
		})
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 25 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		for _, s := range e.fn.sizes(q) {
			if s > 10 {
				t.Errorf("a batch of %d with BatchSize 10", s)
			}
		}
		n := len(e.fn.sizes(q))
		for i := range 3 {
			e.send(t, c, q, fmt.Appendf(nil, "late-%d", i), false)
			time.Sleep(100 * time.Millisecond)
		}
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 28 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		if sizes := e.fn.sizes(q)[n:]; len(sizes) != 1 {
			t.Errorf("3 messages within the window were invoked in batches of %v, want one", sizes)
		}
	})

	// FilterCriteria on the decoded data; filtered-out messages are
	// acknowledged (spec MQ-5).
	t.Run("FilterOnData", func(t *testing.T) {
		q := e.queue("filter")
		c := e.b.Dial(t)
		id := e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) {
			in.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"data":{"kind":["keep"]}}`)}}}
		})
		for i := range 12 {
			kind := "drop"
			if i%3 == 0 {
				kind = "keep"
			}
			e.send(t, c, q, fmt.Appendf(nil, `{"kind":%q,"n":%d}`, kind, i), false)
		}
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 4 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		e.disableAndCheckEmpty(t, id, q)
	})

	// A message the function fails on comes back with redelivered:true,
	// then goes to ActiveMQ.DLQ after the broker's 6 redeliveries (MQ-4).
	t.Run("FailingThenDLQ", func(t *testing.T) {
		q := e.queue("poison")
		c := e.b.Dial(t)
		poison := `{"testfn":{"mode":"error","errorMessage":"poison"},"q":"` + q + `"}`
		e.send(t, c, q, []byte(poison), false)
		id := e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(1) })
		testenv.Eventually(t, 40*time.Second, func(context.Context) error {
			if n := len(e.fn.messages(q)); n != 1+testenv.ActiveMQRedeliveries {
				return fmt.Errorf("the function saw %d deliveries", n)
			}
			return nil
		})
		for i, m := range e.fn.messages(q) {
			if m["redelivered"] != (i > 0) {
				t.Errorf("delivery %d: redelivered %v", i+1, m["redelivered"])
			}
		}
		if r := aws.ToString(e.get(t, id).LastProcessingResult); !strings.HasPrefix(r, "PROBLEM") {
			t.Errorf("LastProcessingResult %q", r)
		}
		e.disableAndCheckEmpty(t, id, q)
		sub, err := c.Subscribe("/queue/"+testenv.ActiveMQDLQ, stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-sub.C:
				if m.Err == nil && string(m.Body) == poison {
					return
				}
			case <-deadline:
				t.Fatal("the message is not in ActiveMQ.DLQ")
			}
		}
	})

	// Credentials the broker refuses disable the mapping with
	// EVENT_SOURCE_AUTHN_ERROR (MQ-7).
	t.Run("WrongCredentialsDisableTheMapping", func(t *testing.T) {
		q := e.queue("authn")
		id := e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) {
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
			return nil
		})
	})

	// The broker restarts while the mapping consumes persistent messages:
	// esmd reconnects by itself and every message reaches the function.
	t.Run("BrokerRestartMidStream", func(t *testing.T) {
		q := e.queue("restart")
		c := e.b.Dial(t)
		const n = 200
		for i := range n / 2 {
			e.send(t, c, q, fmt.Appendf(nil, `{"n":%d,"testfn":{"mode":"sleep","ms":20}}`, i), false)
		}
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		id := e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(5) })
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if n := len(e.fn.distinct(q)); n < 20 {
				return fmt.Errorf("the function saw %d messages", n)
			}
			return nil
		})
		e.b.Restart(t)
		c = e.b.Dial(t)
		for i := n / 2; i < n; i++ {
			e.send(t, c, q, fmt.Appendf(nil, `{"n":%d}`, i), false)
		}
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			if got := len(e.fn.distinct(q)); got != n {
				return fmt.Errorf("the function saw %d distinct messages of %d", got, n)
			}
			return nil
		})
		t.Logf("%d deliveries of %d messages", len(e.fn.messages(q)), n)
		e.disableAndCheckEmpty(t, id, q)
	})
}

// TestServeActiveMQFailover: a mapping of an active/standby broker (a
// master and a slave on one shared store) keeps going when the master
// dies: esmd fails over to the standby's endpoint, and no message is lost.
func TestServeActiveMQFailover(t *testing.T) {
	testenv.Skip(t)
	pair := testenv.ActiveMQPair(t)
	e := newAMQE2EWith(t, pair[0], "stomp://"+pair[0].STOMPAddr+",stomp://"+pair[1].STOMPAddr)
	q := e.queue("failover")
	c := pair[0].Dial(t)
	const n = 100
	for i := range n / 2 {
		e.send(t, c, q, fmt.Appendf(nil, `{"n":%d,"testfn":{"mode":"sleep","ms":20}}`, i), false)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	id := e.create(t, q, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(5) })
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := len(e.fn.distinct(q)); n < 10 {
			return fmt.Errorf("the function saw %d messages", n)
		}
		return nil
	})
	pair[0].Kill(t)
	pair[1].WaitReady(t, 30*time.Second)
	c = pair[1].Dial(t)
	for i := n / 2; i < n; i++ {
		e.send(t, c, q, fmt.Appendf(nil, `{"n":%d}`, i), false)
	}
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		if got := len(e.fn.distinct(q)); got != n {
			return fmt.Errorf("the function saw %d distinct messages of %d", got, n)
		}
		return nil
	})
	t.Logf("%d deliveries of %d messages", len(e.fn.messages(q)), n)
	e.b = pair[1]
	e.disableAndCheckEmpty(t, id, q)
	pair[0].Start(t) // back as the standby
}

type amqE2E struct {
	b                     *testenv.ActiveMQBroker
	fn                    *amqFunction
	cl                    *lambda.Client
	broker                string
	goodSecret, badSecret string
}

func newAMQE2E(t *testing.T) *amqE2E {
	t.Helper()
	b := testenv.ActiveMQ(t)
	// As DescribeBroker lists them: OpenWire (skipped), then STOMP.
	return newAMQE2EWith(t, b, "ssl://127.0.0.1:1,stomp://"+b.STOMPAddr)
}

// newAMQE2EWith serves esmd with --mq-broker ARN=endpoints.
func newAMQE2EWith(t *testing.T, b *testenv.ActiveMQBroker, endpoints string) *amqE2E {
	t.Helper()
	e := &amqE2E{b: b, fn: newAMQFunction(t, testenv.RIE(t)),
		broker:     "arn:aws:mq:us-east-1:000000000000:broker:e2e:b-0f0e0d0c-0000-4000-8000-0000000000a1",
		goodSecret: "arn:aws:secretsmanager:us-east-1:000000000000:secret:amq-good",
		badSecret:  "arn:aws:secretsmanager:us-east-1:000000000000:secret:amq-bad"}
	dir := t.TempDir()
	secrets, _ := json.Marshal(map[string]map[string]string{
		e.goodSecret: {"username": testenv.ActiveMQUser, "password": testenv.ActiveMQPassword},
		e.badSecret:  {"username": testenv.ActiveMQUser, "password": "wrong"},
	})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse([]string{"--mq-broker", e.broker + "=" + endpoints, "--secrets-file", filepath.Join(dir, "secrets.json")}); err != nil {
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

func (e *amqE2E) queue(prefix string) string {
	return fmt.Sprintf("e2e-%s-%d", prefix, time.Now().UnixNano())
}

// send sends a persistent text message or, with bytes, a bytes message
// (the SEND has a content-length).
func (e *amqE2E) send(t *testing.T, c *stomp.Conn, q string, body []byte, bytes bool, hdr ...string) {
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

func (e *amqE2E) create(t *testing.T, q string, edit func(*lambda.CreateEventSourceMappingInput)) string {
	t.Helper()
	in := &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(e.broker), Queues: []string{q},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(e.goodSecret)}}}
	return createMapping(t, e.cl, in, edit)
}

func (e *amqE2E) get(t *testing.T, id string) *lambda.GetEventSourceMappingOutput {
	t.Helper()
	return getMapping(t, e.cl, id)
}

// disableAndCheckEmpty disables a mapping and checks that nothing comes
// back to a fresh consumer: every message was acknowledged.
func (e *amqE2E) disableAndCheckEmpty(t *testing.T, id, q string) {
	t.Helper()
	if _, err := e.cl.UpdateEventSourceMapping(context.Background(), &lambda.UpdateEventSourceMappingInput{UUID: aws.String(id), Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if st := aws.ToString(e.get(t, id).State); st != "Disabled" {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	c := e.b.Dial(t)
	sub, err := c.Subscribe("/queue/"+q, stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err == nil {
			t.Errorf("a message is back in %s: %q", q, m.Body)
		}
	case <-time.After(3 * time.Second):
	}
}

// amqFunction records the aws:mq events it forwards to RIE, by queue.
type amqFunction struct {
	*httptest.Server
	mu     sync.Mutex
	events map[string][]map[string]any
}

func newAMQFunction(t *testing.T, rie string) *amqFunction {
	target, err := url.Parse(rie)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &amqFunction{events: map[string][]map[string]any{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msgs, _ := ev["messages"].([]any)
		if len(msgs) > 0 {
			m, _ := msgs[0].(map[string]any)
			d, _ := m["destination"].(map[string]any)
			q, _ := d["physicalName"].(string)
			f.mu.Lock()
			f.events[q] = append(f.events[q], ev)
			f.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *amqFunction) event(q string, i int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events[q][i]
}

func (f *amqFunction) messages(q string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, ev := range f.events[q] {
		for _, m := range ev["messages"].([]any) {
			out = append(out, m.(map[string]any))
		}
	}
	return out
}

func (f *amqFunction) sizes(q string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, ev := range f.events[q] {
		out = append(out, len(ev["messages"].([]any)))
	}
	return out
}

// distinct returns the distinct message bodies of a queue the function saw.
func (f *amqFunction) distinct(q string) map[string]bool {
	seen := map[string]bool{}
	for _, m := range f.messages(q) {
		d, _ := m["data"].(string)
		seen[d] = true
	}
	return seen
}

// TestActiveMQSIGKILLRestart: esmd (the real binary) is SIGKILLed while a
// mapping consumes persistent messages; once started again on the same data
// directory, every message reaches the function: what was delivered and
// not ACKed comes back when the killed connection closes.
func TestActiveMQSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	b := testenv.ActiveMQ(t)
	bin := buildBinary(t)
	rec := newInvokeRecorder(amqKeys)
	fn := httptest.NewServer(rec)
	defer fn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q := fmt.Sprintf("sigkill-%d", time.Now().UnixNano())
	c := b.Dial(t)
	const n = 300
	for i := range n {
		if err := c.Send("/queue/"+q, "", fmt.Appendf(nil, "m-%03d", i), stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.NoContentLength); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := "arn:aws:secretsmanager:us-east-1:000000000000:secret:amq"
	secrets, _ := json.Marshal(map[string]map[string]string{secret: {"username": testenv.ActiveMQUser, "password": testenv.ActiveMQPassword}})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	broker := "arn:aws:mq:us-east-1:000000000000:broker:kill:b-a1"
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--lambda-endpoint", fn.URL, "--function-check", "never",
		"--mq-broker", broker + "=stomp://" + b.STOMPAddr, "--secrets-file", filepath.Join(dir, "secrets.json")}
	cmd, addr := startBinary(t, bin, args...)
	_, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
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
		return nil
	})
	t.Logf("%d distinct messages had reached the function before the kill", before)
}

// amqKeys names each message of an aws:mq event by its body.
func amqKeys(body []byte) ([]string, error) {
	var ev struct {
		Messages []struct {
			Data string `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	var keys []string
	for _, m := range ev.Messages {
		data, _ := base64.StdEncoding.DecodeString(m.Data)
		keys = append(keys, string(data))
	}
	return keys, nil
}
