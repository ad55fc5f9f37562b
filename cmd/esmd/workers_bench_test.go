package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/jackc/pgx/v5"

	"github.com/esmd/esmd/internal/testenv"
)

// pgWrites returns the next transaction id PostgreSQL will assign: only
// transactions that write take one, so its growth over a time is the
// writing transactions of that time (every database of the server, which
// here serves only this test).
func pgWrites(t *testing.T, dsn string) int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var next int64
	if err := conn.QueryRow(t.Context(), `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	return next
}

// TestWorkersKinesisThroughput measures (it asserts only that every
// record arrives): one Kinesis mapping on kinesalite, 8 shards, a backlog
// of 40,000 records, BatchSize 100, read by 1, 2 and 3 esmd workers on one
// PostgreSQL store, all on this machine. It logs records/s from the
// mapping's creation to the last record's invocation, and PostgreSQL's
// writing transactions per second over that time (checkpoints, leases,
// the mapping's own writes) and over the idle seconds after (lease
// renewals). Run with ESMD_WORKERS_BENCH=1; docs/performance.md has the
// figures.
func TestWorkersKinesisThroughput(t *testing.T) {
	if os.Getenv("ESMD_WORKERS_BENCH") != "1" {
		t.Skip("a measurement: set ESMD_WORKERS_BENCH=1")
	}
	testenv.Skip(t)
	ctx := context.Background()
	ep := testenv.Kinesalite(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	const shards, keys, perKey = 8, 64, 625 // 40,000 records
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			name, arn := kinesisStream(t, kc, "bench", shards)
			kinesisPutRange(t, kc, name, keys, 0, perKey)
			rec := &kinesisRecorder{byKey: map[string][]int{}}
			fn := httptest.NewServer(rec)
			defer fn.Close()
			f := newWorkerFleet(t, fn.URL, "10s")
			for i := range workers {
				f.start(fmt.Sprintf("w%d", i+1))
			}
			w0 := pgWrites(t, f.dsn)
			start := time.Now()
			if _, err := client(f.addrs["w1"]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
				FunctionName: aws.String("function"), EventSourceArn: aws.String(arn),
				StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(100)}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 5*time.Minute, func(context.Context) error {
				if _, distinct := rec.count(); distinct != keys*perKey {
					return fmt.Errorf("%d of %d records delivered", distinct, keys*perKey)
				}
				return nil
			})
			took := time.Since(start)
			w1 := pgWrites(t, f.dsn)
			// The idle load: lease renewals and presence only.
			const idle = 5 * time.Second
			time.Sleep(idle)
			w2 := pgWrites(t, f.dsn)
			total, distinct, err := rec.check(keys, perKey, 2*workers)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d workers: %d records in %v: %.0f records/s (%d duplicates); PostgreSQL write transactions: %.1f/s while reading, %.1f/s idle",
				workers, distinct, took.Round(time.Millisecond), float64(distinct)/took.Seconds(), total-distinct,
				float64(w1-w0)/took.Seconds(), float64(w2-w1)/idle.Seconds())
		})
	}
}
