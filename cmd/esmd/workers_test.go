package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/internal/testenv"
)

// sqsIDs reads the message ids of an SQS event.
func sqsIDs(body []byte) ([]string, error) {
	var ev struct{ Records []struct{ MessageID string } }
	err := json.Unmarshal(body, &ev)
	ids := make([]string, 0, len(ev.Records))
	for _, r := range ev.Records {
		ids = append(ids, r.MessageID)
	}
	return ids, err
}

// TestWorkersShareOneControlPlane runs two esmd processes on one
// PostgreSQL store: a mapping created through one is listed and run by the
// other; disabled through one, it stops on both; enabled and deleted
// through the other, the first follows.
func TestWorkersShareOneControlPlane(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	// A receive that was waiting when worker A stopped may still be
	// answered by the queue: its message is seen again after the
	// visibility timeout, kept short.
	qURL, qArn := sqsQueue(t, sc, "workers", map[string]string{"VisibilityTimeout": "2"})
	rec := newInvokeRecorder(sqsIDs)
	fn := httptest.NewServer(rec)
	defer fn.Close()
	dsn := testenv.PostgreSQLDatabase(t)
	bin := buildBinary(t)
	worker := func() (*exec.Cmd, string) {
		return startBinary(t, bin, "--store", dsn, "--data-dir", t.TempDir(), "--function-check", "never", "--lambda-endpoint", fn.URL)
	}
	a, addrA := worker()
	_, addrB := worker()
	ca, cb := client(addrA), client(addrB)

	out, err := ca.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(qArn), BatchSize: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	id := out.UUID
	state := func(c *lambda.Client) string {
		got, err := c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: id})
		if err != nil {
			return err.Error()
		}
		return aws.ToString(got.State)
	}
	waitState := func(c *lambda.Client, want string) {
		t.Helper()
		start := time.Now()
		testenv.Eventually(t, 20*time.Second, func(context.Context) error {
			if got := state(c); got != want {
				return fmt.Errorf("state %s, want %s", got, want)
			}
			return nil
		})
		t.Logf("%s seen after %v", want, time.Since(start).Round(time.Millisecond))
	}
	waitState(cb, "Enabled")
	if l, err := cb.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{}); err != nil || len(l.EventSourceMappings) != 1 {
		t.Fatalf("worker B lists %v (%v)", l, err)
	}
	send := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &qURL, MessageBody: aws.String(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	delivered := func(want int) {
		t.Helper()
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("%d messages delivered", want), func() bool {
			_, distinct, _ := rec.count()
			return distinct == want
		})
	}

	// With worker A stopped, worker B alone consumes: it runs the mapping
	// it did not create.
	a.Process.Signal(syscall.SIGTERM)
	a.Wait()
	send(10)
	delivered(10)

	// A again; disabled through A, the mapping stops on B too: messages
	// stay in the queue.
	_, addrA = worker()
	ca = client(addrA)
	waitState(ca, "Enabled")
	if _, err := ca.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: id, Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	waitState(cb, "Disabled")
	send(10)
	// A negative check: nothing consumes the queue while the mapping is
	// disabled (two seconds: SQS pollers wait up to 20 s in one receive,
	// but a running one would take these within milliseconds).
	testenv.Consistently(t, 2*time.Second, func(context.Context) error {
		if _, distinct, _ := rec.count(); distinct != 10 {
			return fmt.Errorf("%d messages delivered while disabled", distinct)
		}
		return nil
	})
	attrs, err := sc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &qURL,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessages"] != "10" {
		t.Errorf("queue after disable: %v %v", attrs.Attributes, err)
	}

	// Enabled through B: consumed again.
	if _, err := cb.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: id, Enabled: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	waitState(ca, "Enabled")
	delivered(20)

	// Deleted through B: gone from A.
	waitState(cb, "Enabled")
	if _, err := cb.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: id}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		l, err := ca.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
		if err != nil || len(l.EventSourceMappings) != 0 {
			return fmt.Errorf("worker A lists %d mappings (%v)", len(l.EventSourceMappings), err)
		}
		return nil
	})
	if _, _, total := rec.count(); total < 20 {
		t.Errorf("%d deliveries", total)
	}
}
