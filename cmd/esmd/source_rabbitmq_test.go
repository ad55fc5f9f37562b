package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
)

// TestServeRabbitMQEndToEnd drives esmd serve as a user does, with a real
// RabbitMQ broker and a real function (internal/testfn under the Runtime
// Interface Emulator): a mapping in a virtual host other than "/" consumes
// published messages and acks them once the function returns; a message
// the function fails on is redelivered until the queue's delivery limit
// dead-letters it; a mapping with a wrong password reports it in
// LastProcessingResult.
func TestServeRabbitMQEndToEnd(t *testing.T) {
	testenv.Skip(t)
	rie := testenv.RIE(t)
	b := testenv.RabbitMQ(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	vh := testenv.RabbitMQVHost
	conn, err := amqp.Dial(b.URL(vh))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, dlq := fmt.Sprintf("e2e-%d", time.Now().UnixNano()), fmt.Sprintf("e2e-dlq-%d", time.Now().UnixNano())
	for _, d := range []struct {
		name string
		args amqp.Table
	}{
		{dlq, nil},
		{q, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": int32(1), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}},
	} {
		if _, err := ch.QueueDeclare(d.name, true, false, false, false, d.args); err != nil {
			t.Fatal(err)
		}
		defer ch.QueueDelete(d.name, false, false, false)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	publish := func(body string) {
		t.Helper()
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v", err)
		}
	}
	depth := func(queue string) int {
		t.Helper()
		st, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st.Messages
	}

	dir := t.TempDir()
	good, bad := "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq-good", "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq-bad"
	secrets, _ := json.Marshal(map[string]map[string]string{
		good: {"username": testenv.RabbitMQUser, "password": testenv.RabbitMQPassword},
		bad:  {"username": testenv.RabbitMQUser, "password": "wrong"},
	})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	broker := "arn:aws:mq:us-east-1:000000000000:broker:e2e:b-0f0e0d0c-0000-4000-8000-000000000001"
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse([]string{"--mq-broker", broker + "=amqp://" + b.Addr, "--secrets-file", filepath.Join(dir, "secrets.json")}); err != nil {
		t.Fatal(err)
	}
	c.dataDir = filepath.Join(dir, "data")
	c.invokeMode = "rie"
	c.lambdaEndpoint = rie
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)
	create := func(secret, queue string) string {
		t.Helper()
		out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
			FunctionName: aws.String("function"), EventSourceArn: aws.String(broker), Queues: []string{queue}, BatchSize: aws.Int32(10),
			SourceAccessConfigurations: []types.SourceAccessConfiguration{
				{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(secret)},
				{Type: types.SourceAccessTypeVirtualHost, URI: aws.String(vh)},
			}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UUID)
	}
	lastResult := func(id string) string {
		got, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(got.LastProcessingResult)
	}

	id := create(good, q)

	// A message the function fails on: redelivered, then dead-lettered by
	// the quorum queue's delivery limit (1 redelivery).
	publish(`{"testfn":{"mode":"error","errorMessage":"poison"}}`)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := depth(dlq); n != 1 {
			return fmt.Errorf("%d messages dead-lettered", n)
		}
		return nil
	})
	if r := lastResult(id); r != "PROBLEM: Function call failed" {
		t.Errorf("after the failure, LastProcessingResult %q", r)
	}

	// Messages the function takes are acked: the queue drains and stays
	// empty, and the mapping reports OK.
	for i := range 25 {
		publish(fmt.Sprintf(`{"n":%d}`, i))
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		// Ready and unacknowledged: zero once every message was acked.
		out := b.Ctl(t, "list_queues", "-p", vh, "--quiet", "--no-table-headers", "name", "messages")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == q && f[1] != "0" {
				return fmt.Errorf("%s messages not acked", f[1])
			}
		}
		if r := lastResult(id); r != "OK" {
			return fmt.Errorf("LastProcessingResult %q", r)
		}
		return nil
	})
	// Disabling closes the consumer's connection: anything unacked would
	// now be ready again.
	if _, err := cl.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(id), Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return err
		}
		if st.Consumers != 0 {
			return fmt.Errorf("%d consumers after disabling", st.Consumers)
		}
		if st.Messages != 0 {
			return fmt.Errorf("%d messages back in the queue: they were never acked", st.Messages)
		}
		return nil
	})

	// Wrong credentials: the mapping stays and says why.
	badID := create(bad, "another-queue") // one mapping per broker, queue and function
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if r := lastResult(badID); !strings.HasPrefix(r, "PROBLEM: ") || !strings.Contains(r, "authentication failed") {
			return fmt.Errorf("LastProcessingResult %q", r)
		}
		return nil
	})
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
	env, err := rabbitmqEnv(&SourceEnv{AWS: testenv.AWSConfig(srv.URL), Flags: map[string][]string{}})
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
	env, err = rabbitmqEnv(&SourceEnv{AWS: testenv.AWSConfig(srv.URL), Flags: map[string][]string{
		"mq-broker": {"arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-rabbit=amqp://127.0.0.1:5672"}}})
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	cfg, err := env.Config(ctx, &esm.Config{EventSourceArn: str("arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-rabbit"), Queues: []string{"q"}}, "id")
	if err != nil || cfg.URL != "amqp://127.0.0.1:5672" || cfg.VHost != "/" || cfg.Queue != "q" {
		t.Errorf("config %+v, %v", cfg, err)
	}
	if _, err := rabbitmqEnv(&SourceEnv{Flags: map[string][]string{"mq-broker": {"arn=ssl://activemq:61617"}}}); err == nil {
		t.Error("an ActiveMQ endpoint in --mq-broker is accepted")
	}
}
