package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
)

// The PostgreSQL store splits a queue mapping's cap among the workers.
var _ pipeline.Sharer = (*pgstore.Store)(nil)

// concurrencyGauge is a function endpoint that records the invocations in
// flight across every worker that calls it, their peak, and the SQS
// messages delivered.
type concurrencyGauge struct {
	mu   sync.Mutex
	cur  int
	peak int
	seen map[string]int
}

func (g *concurrencyGauge) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var ids []string
	if err == nil {
		ids, err = sqsIDs(body)
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
	g := &concurrencyGauge{seen: map[string]int{}}
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
	id := aws.ToString(out.UUID)

	// Settled: the three workers are present on the mapping, and each has
	// renewed its presence (and read its share) since all three were.
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
	testenv.EventuallyTrue(t, 30*time.Second, "three workers present", func() bool {
		first = presence()
		return len(first) == 3
	})
	testenv.EventuallyTrue(t, 30*time.Second, "every worker renewed its share", func() bool {
		now := presence()
		for w, at := range first {
			if !now[w].After(at) {
				return false
			}
		}
		return len(now) == 3
	})

	// Messages only now: nothing was invoked before the workers settled.
	const n = 60
	for i := range n {
		if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &qURL, MessageBody: aws.String(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyTrue(t, 60*time.Second, fmt.Sprintf("%d messages delivered", n), func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.seen) == n
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("peak concurrent invocations across 3 workers: %d", g.peak)
	if g.peak > 2 {
		t.Errorf("peak concurrent invocations across the workers %d, MaximumConcurrency 2", g.peak)
	}
}
