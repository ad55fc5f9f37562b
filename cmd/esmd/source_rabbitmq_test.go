package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, c, c.logger(io.Discard), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cl := client(<-addrc)
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
