package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/go-stomp/stomp/v3"
	"github.com/jackc/pgx/v5"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
)

// The PostgreSQL store splits a queue mapping's cap among the workers.
var _ pipeline.Sharer = (*pgstore.Store)(nil)

// concurrencyGauge is a function endpoint that records the invocations in
// flight across every worker that calls it, their peak, and the messages
// delivered (named by keys).
type concurrencyGauge struct {
	keys func([]byte) ([]string, error)
	mu   sync.Mutex
	cur  int
	peak int
	seen map[string]int
}

func newConcurrencyGauge(keys func([]byte) ([]string, error)) *concurrencyGauge {
	return &concurrencyGauge{keys: keys, seen: map[string]int{}}
}

// delivered waits until n distinct messages reached the function and
// returns the peak of concurrent invocations.
func (g *concurrencyGauge) delivered(t *testing.T, n int) int {
	t.Helper()
	testenv.EventuallyTrue(t, 60*time.Second, fmt.Sprintf("%d messages delivered", n), func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.seen) == n
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

func (g *concurrencyGauge) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var ids []string
	if err == nil {
		ids, err = g.keys(body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	g.cur++
	g.peak = max(g.peak, g.cur)
	g.mu.Unlock()
	// Work per batch, so that invocations of several workers overlap.
	time.Sleep(20 * time.Millisecond)
	g.mu.Lock()
	g.cur--
	for _, id := range ids {
		g.seen[id]++
	}
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "null")
}

// TestWorkersShareMaximumConcurrency runs three esmd workers on one
// PostgreSQL store and one SQS mapping with MaximumConcurrency 2: once the
// three are present, the function never sees more than 2 invocations at
// once from all of them together (shares 1, 1 and 0), and every message
// is delivered.
func TestWorkersShareMaximumConcurrency(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	qURL, qArn := sqsQueue(t, sc, "cap", nil)
	g := newConcurrencyGauge(sqsIDs)
	fn := httptest.NewServer(g)
	defer fn.Close()
	dsn := testenv.PostgreSQLDatabase(t)
	bin := buildBinary(t)
	var addrs []string
	for range 3 {
		_, addr := startBinary(t, bin, "--store", dsn, "--data-dir", t.TempDir(), "--function-check", "never",
			"--lambda-endpoint", fn.URL, "--lease-duration", "1s")
		addrs = append(addrs, addr)
	}
	out, err := client(addrs[0]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(qArn), BatchSize: aws.Int32(1),
		ScalingConfig: &lambdatypes.ScalingConfig{MaximumConcurrency: aws.Int32(2)}})
	if err != nil {
		t.Fatal(err)
	}
	settled(t, dsn, aws.ToString(out.UUID), 3)

	// Messages only now: nothing was invoked before the workers settled.
	const n = 60
	for i := range n {
		if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &qURL, MessageBody: aws.String(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	peak := g.delivered(t, n)
	t.Logf("peak concurrent invocations across 3 workers: %d", peak)
	if peak > 2 {
		t.Errorf("peak concurrent invocations across the workers %d, MaximumConcurrency 2", peak)
	}
}

// TestWorkersShareActiveMQConcurrency runs three esmd workers on one
// PostgreSQL store and one ActiveMQ mapping: Amazon MQ's 5 concurrent
// invocations hold across the three (shares 2, 2 and 1), where each
// worker alone has 5 lanes.
func TestWorkersShareActiveMQConcurrency(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	b := testenv.ActiveMQ(t)
	g := newConcurrencyGauge(amqKeys)
	fn := httptest.NewServer(g)
	defer fn.Close()
	dsn := testenv.PostgreSQLDatabase(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	secret := "arn:aws:secretsmanager:us-east-1:000000000000:secret:amq"
	secrets, _ := json.Marshal(map[string]map[string]string{secret: {"username": testenv.ActiveMQUser, "password": testenv.ActiveMQPassword}})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	broker := "arn:aws:mq:us-east-1:000000000000:broker:cap:b-a1"
	var addrs []string
	for range 3 {
		_, addr := startBinary(t, bin, "--store", dsn, "--data-dir", t.TempDir(), "--function-check", "never",
			"--lambda-endpoint", fn.URL, "--lease-duration", "1s", "--mq-broker", broker+"=stomp://"+b.STOMPAddr,
			"--secrets-file", filepath.Join(dir, "secrets.json"))
		addrs = append(addrs, addr)
	}
	q := fmt.Sprintf("cap-%d", time.Now().UnixNano())
	out, err := client(addrs[0]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(broker), Queues: []string{q}, BatchSize: aws.Int32(1),
		SourceAccessConfigurations: []lambdatypes.SourceAccessConfiguration{{Type: lambdatypes.SourceAccessTypeBasicAuth, URI: aws.String(secret)}}})
	if err != nil {
		t.Fatal(err)
	}
	settled(t, dsn, aws.ToString(out.UUID), 3)

	const n = 100
	c := b.Dial(t)
	for i := range n {
		if err := c.Send("/queue/"+q, "", fmt.Appendf(nil, "m-%03d", i), stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.NoContentLength); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	peak := g.delivered(t, n)
	t.Logf("peak concurrent invocations across 3 workers: %d", peak)
	if peak > 5 {
		t.Errorf("peak concurrent invocations across the workers %d, Amazon MQ's cap 5", peak)
	}
}

// settled waits until workers workers are present on mapping id in the
// PostgreSQL store at dsn, and each has renewed its presence (and read its
// share of the mapping's cap) since they all were.
func settled(t *testing.T, dsn, id string, workers int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	presence := func() map[string]time.Time {
		rows, err := conn.Query(ctx, `SELECT worker, expires_at FROM esmd_lane_workers WHERE mapping = $1`, id)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]time.Time{}
		for rows.Next() {
			var w string
			var at time.Time
			if err := rows.Scan(&w, &at); err != nil {
				t.Fatal(err)
			}
			out[w] = at
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var first map[string]time.Time
	testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("%d workers present", workers), func() bool {
		first = presence()
		return len(first) == workers
	})
	testenv.EventuallyTrue(t, 30*time.Second, "every worker renewed its share", func() bool {
		now := presence()
		for w, at := range first {
			if !now[w].After(at) {
				return false
			}
		}
		return len(now) == workers
	})

}
