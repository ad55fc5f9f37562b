package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
)

// kinesisFleet is a set of esmd worker processes on one PostgreSQL store
// and one Kinesis server (kinesalite).
type kinesisFleet struct {
	t       *testing.T
	bin     string
	dsn     string
	fn      string
	ttl     string
	extra   []string
	workers map[string]*exec.Cmd
	addrs   map[string]string
}

func newKinesisFleet(t *testing.T, fn, ttl string, extra ...string) *kinesisFleet {
	return &kinesisFleet{t: t, bin: buildBinary(t), dsn: testenv.PostgreSQLDatabase(t), fn: fn, ttl: ttl, extra: extra,
		workers: map[string]*exec.Cmd{}, addrs: map[string]string{}}
}

func (f *kinesisFleet) start(id string) string {
	f.t.Helper()
	args := append([]string{"--store", f.dsn, "--data-dir", f.t.TempDir(), "--function-check", "never",
		"--lambda-endpoint", f.fn, "--worker-id", id, "--lease-duration", f.ttl}, f.extra...)
	cmd, addr := startBinary(f.t, f.bin, args...)
	f.workers[id], f.addrs[id] = cmd, addr
	return addr
}

func (f *kinesisFleet) kill(id string) {
	f.t.Helper()
	if err := f.workers[id].Process.Kill(); err != nil {
		f.t.Fatal(err)
	}
	_ = f.workers[id].Wait()
	delete(f.addrs, id)
}

// lanes reads the lanes endpoint of any live worker: owner by lane, for
// live leases.
func (f *kinesisFleet) lanes(uuid string) (map[string]string, error) {
	for _, addr := range f.addrs {
		resp, err := http.Get("http://" + addr + lanesPath + uuid + "/lanes")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out struct{ Lanes []pgstore.Lease }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		owners := map[string]string{}
		for _, l := range out.Lanes {
			if l.Live && l.Owner != "" {
				owners[l.Lane] = l.Owner
			}
		}
		return owners, nil
	}
	return nil, fmt.Errorf("no worker")
}

// settled waits until the shards are held by exactly the live workers,
// within one of each other, and each worker's /metrics shows the lanes the
// store says it holds; it returns the lanes per worker and how long it
// took.
func (f *kinesisFleet) settled(uuid string, shards int) (map[string]int, time.Duration) {
	f.t.Helper()
	start := time.Now()
	var counts map[string]int
	testenv.Eventually(f.t, 60*time.Second, func(context.Context) error {
		owners, err := f.lanes(uuid)
		if err != nil {
			return err
		}
		counts = map[string]int{}
		for _, w := range owners {
			counts[w]++
		}
		if len(owners) != shards || len(counts) != len(f.addrs) {
			return fmt.Errorf("%d of %d shards held, by %v", len(owners), shards, counts)
		}
		lo, hi := shards, 0
		for id := range f.addrs {
			lo, hi = min(lo, counts[id]), max(hi, counts[id])
		}
		if hi-lo > 1 {
			return fmt.Errorf("unbalanced: %v", counts)
		}
		for id, addr := range f.addrs {
			text := scrapeMetrics(f.t, addr)
			if n := strings.Count(text, fmt.Sprintf(`worker=%q} 1`, id)); n != counts[id] {
				return fmt.Errorf("%s shows %d leased lanes in /metrics, the store says %d", id, n, counts[id])
			}
		}
		return nil
	})
	return counts, time.Since(start)
}

// TestWorkersShareKinesisShards is the scale-out acceptance test: three
// esmd processes on one PostgreSQL store read one Kinesis mapping of 8
// shards, 3/3/2, and consume one SQS mapping's queue together. One is killed (SIGKILL): its shards move to the others
// once its leases expire. It restarts, a fourth joins (2/2/2/2), and the
// mapping is disabled through the fourth's API. Every record is delivered
// at least once, each key's records in order, with steps back only to a
// checkpoint when a shard changed hands.
func TestWorkersShareKinesisShards(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	ep := testenv.Kinesalite(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	const shards, keys, batch = 8, 32, 10
	const ttl = 3 * time.Second
	name, arn := kinesisStream(t, kc, "workers", shards)
	rec := &kinesisRecorder{delay: 5 * time.Millisecond, byKey: map[string][]int{}}
	// An SQS mapping beside it, on fauxqs, to function "sqsfn": every
	// worker consumes its queue.
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	qURL, qArn := sqsQueue(t, sc, "workers", map[string]string{"VisibilityTimeout": "2"})
	sqsRec := newInvokeRecorder(sqsIDs)
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "sqsfn") {
			sqsRec.ServeHTTP(w, r)
			return
		}
		rec.ServeHTTP(w, r)
	}))
	defer fn.Close()
	sent := 0
	sendSQS := func(n int) {
		t.Helper()
		for range n {
			if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &qURL, MessageBody: aws.String(fmt.Sprint(sent))}); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	f := newKinesisFleet(t, fn.URL, ttl.String())
	for _, id := range []string{"w1", "w2", "w3"} {
		f.start(id)
	}
	out, err := client(f.addrs["w1"]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(arn),
		StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(batch)})
	if err != nil {
		t.Fatal(err)
	}
	uuid := aws.ToString(out.UUID)
	if _, err := client(f.addrs["w2"]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("sqsfn"), EventSourceArn: aws.String(qArn), BatchSize: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	counts, took := f.settled(uuid, shards)
	t.Logf("three workers: %v, settled in %v", counts, took.Round(time.Millisecond))

	perKey := 0
	put := func(n int) {
		kinesisPutRange(t, kc, name, keys, perKey, perKey+n)
		perKey += n
	}
	deliveredAll := func() {
		t.Helper()
		testenv.Eventually(t, 90*time.Second, func(context.Context) error {
			if _, distinct := rec.count(); distinct != keys*perKey {
				return fmt.Errorf("%d of %d records delivered", distinct, keys*perKey)
			}
			return nil
		})
	}
	put(40)
	deliveredAll()

	// SIGKILL: the victim's shards move once its leases expire.
	victim := ""
	owners, _ := f.lanes(uuid)
	for _, w := range owners {
		victim = w
		break
	}
	put(40)
	sendSQS(100)
	f.kill(victim)
	sendSQS(100)
	counts, took = f.settled(uuid, shards)
	t.Logf("%s killed (SIGKILL): its shards moved in %v (lease time %v): %v", victim, took.Round(time.Millisecond), ttl, counts)
	deliveredAll()

	// It restarts; a fourth worker joins.
	f.start(victim)
	counts, took = f.settled(uuid, shards)
	t.Logf("%s restarted: %v, settled in %v", victim, counts, took.Round(time.Millisecond))
	put(20)
	f.start("w4")
	counts, took = f.settled(uuid, shards)
	t.Logf("w4 joined: %v, settled in %v", counts, took.Round(time.Millisecond))
	for id, n := range counts {
		if n != 2 {
			t.Errorf("%s holds %d shards of 8 among 4 workers", id, n)
		}
	}
	put(20)
	deliveredAll()

	// Every SQS message too, across the kill (one received by the killed
	// worker comes back after its visibility timeout).
	testenv.EventuallyTrue(t, 60*time.Second, "every SQS message delivered", func() bool {
		_, distinct, _ := sqsRec.count()
		return distinct == sent
	})
	total, distinct, err := rec.check(keys, perKey, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, %d deliveries: %d duplicates (in flight on the killed worker, or read past the checkpoint of a shard that changed hands)", distinct, total, total-distinct)

	// Disabled through w4: every worker lets go of its shards.
	if _, err := client(f.addrs["w4"]).UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: &uuid, Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		for id, addr := range f.addrs {
			if text := scrapeMetrics(t, addr); strings.Contains(text, "esmd_lane_leased{") {
				return fmt.Errorf("%s still reads shards", id)
			}
		}
		owners, err := f.lanes(uuid)
		if err != nil || len(owners) != 0 {
			return fmt.Errorf("leases held after disable: %v %v", owners, err)
		}
		return nil
	})
	_, before := rec.count()
	put(5)
	// A negative check: nothing is read while the mapping is disabled
	// (a second: a running worker reads within milliseconds).
	testenv.Consistently(t, time.Second, func(context.Context) error {
		if _, n := rec.count(); n != before {
			return fmt.Errorf("%d records delivered while disabled", n-before)
		}
		return nil
	})
}

// TestPausedWorkerIsFenced: a worker stopped with SIGSTOP past its lease
// time, with batches in flight, then resumed (SIGCONT), does not write a
// checkpoint over its successor's: no shard's stored position ever goes
// back.
func TestPausedWorkerIsFenced(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	ep := testenv.Kinesalite(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	const shards, keys = 4, 16
	const ttl = 2 * time.Second
	name, arn := kinesisStream(t, kc, "paused", shards)
	// A slow function: the paused worker has batches in flight.
	rec := &kinesisRecorder{delay: 100 * time.Millisecond, byKey: map[string][]int{}}
	fn := httptest.NewServer(rec)
	defer fn.Close()
	f := newKinesisFleet(t, fn.URL, ttl.String(), "--kinesis-checkpoint-interval", "0s")
	f.start("w1")
	f.start("w2")
	out, err := client(f.addrs["w1"]).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("function"), EventSourceArn: aws.String(arn),
		StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	uuid := aws.ToString(out.UUID)
	f.settled(uuid, shards)
	kinesisPutRange(t, kc, name, keys, 0, 60)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n, _ := rec.count(); n < 8 {
			return fmt.Errorf("%d invocations", n)
		}
		return nil
	})

	store, err := pgstore.Open(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Watch every shard's stored position from now on: it must never go
	// back.
	stop := make(chan struct{})
	regress := make(chan string, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		last := map[string]*big.Int{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			pos, err := store.Positions(ctx, uuid)
			if err != nil {
				continue
			}
			for lane, p := range pos {
				n, ok := new(big.Int).SetString(p, 10)
				if !ok {
					continue // SHARD_END
				}
				if l := last[lane]; l != nil && n.Cmp(l) < 0 {
					select {
					case regress <- fmt.Sprintf("%s went back from %s to %s", lane, l, n):
					default:
					}
				}
				last[lane] = n
			}
		}
	}()

	paused := f.workers["w1"]
	if err := paused.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// w1's API cannot answer while paused: read the leases through w2.
	delete(f.addrs, "w1")
	start := time.Now()
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		owners, err := f.lanes(uuid)
		if err != nil {
			return err
		}
		for lane, w := range owners {
			if w != "w2" {
				return fmt.Errorf("%s still held by %s", lane, w)
			}
		}
		if len(owners) != shards {
			return fmt.Errorf("%d of %d shards held", len(owners), shards)
		}
		return nil
	})
	t.Logf("w1 paused: w2 held every shard after %v (lease time %v)", time.Since(start).Round(time.Millisecond), ttl)
	// w2 checkpoints past what w1 had in flight.
	kinesisPutRange(t, kc, name, keys, 60, 70)
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		if _, distinct := rec.count(); distinct != keys*70 {
			return fmt.Errorf("%d of %d records delivered", distinct, keys*70)
		}
		return nil
	})
	if err := paused.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// w1 resumes: its late acknowledgements are refused, it finds its
	// leases gone, and the two settle again.
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		owners, err := f.lanes(uuid)
		if err != nil {
			return err
		}
		var held []string
		for _, w := range owners {
			held = append(held, w)
		}
		if !slices.Contains(held, "w1") {
			return fmt.Errorf("w1 holds nothing yet: %v", owners)
		}
		return nil
	})
	kinesisPutRange(t, kc, name, keys, 70, 80)
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		if _, distinct := rec.count(); distinct != keys*80 {
			return fmt.Errorf("%d of %d records delivered", distinct, keys*80)
		}
		return nil
	})
	close(stop)
	<-watched
	select {
	case r := <-regress:
		t.Fatalf("a checkpoint was written over a successor's: %s", r)
	default:
	}
	if _, _, err := rec.check(keys, 80, 4); err != nil {
		t.Fatal(err)
	}
}
