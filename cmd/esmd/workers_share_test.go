package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/ddbstreams"
	"github.com/esmd/esmd/internal/testenv"
)

// workerFleet is a set of esmd worker processes on one PostgreSQL store,
// each with its own data directory and --worker-id.
type workerFleet struct {
	t       *testing.T
	bin     string
	dsn     string
	fn      string
	ttl     string
	extra   []string
	workers map[string]*exec.Cmd
	addrs   map[string]string
}

func newWorkerFleet(t *testing.T, fn, ttl string, extra ...string) *workerFleet {
	return &workerFleet{t: t, bin: buildBinary(t), dsn: testenv.PostgreSQLDatabase(t), fn: fn, ttl: ttl, extra: extra,
		workers: map[string]*exec.Cmd{}, addrs: map[string]string{}}
}

func (f *workerFleet) start(id string) string {
	f.t.Helper()
	args := append([]string{"--store", f.dsn, "--data-dir", f.t.TempDir(), "--function-check", "never",
		"--lambda-endpoint", f.fn, "--worker-id", id, "--lease-duration", f.ttl}, f.extra...)
	cmd, addr := startBinary(f.t, f.bin, args...)
	f.workers[id], f.addrs[id] = cmd, addr
	return addr
}

func (f *workerFleet) kill(id string) {
	f.t.Helper()
	if err := f.workers[id].Process.Kill(); err != nil {
		f.t.Fatal(err)
	}
	_ = f.workers[id].Wait()
	delete(f.addrs, id)
}

// lanes reads the lanes endpoint of any live worker: owner by lane, for
// live leases.
func (f *workerFleet) lanes(uuid string) (map[string]string, error) {
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
func (f *workerFleet) settled(uuid string, shards int) (map[string]int, time.Duration) {
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
			n := 0
			for _, line := range strings.Split(scrapeMetrics(f.t, addr), "\n") {
				if strings.HasPrefix(line, fmt.Sprintf("esmd_lane_leased{uuid=%q,", uuid)) && strings.HasSuffix(line, fmt.Sprintf(`worker=%q} 1`, id)) {
					n++
				}
			}
			if n != counts[id] {
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
	f := newWorkerFleet(t, fn.URL, ttl.String())
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
	f := newWorkerFleet(t, fn.URL, ttl.String(), "--kinesis-checkpoint-interval", "0s")
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

// fleetSource is one mapping of TestWorkersShareEverySource: how to create
// it, how to send it records and what its source promises.
type fleetSource struct {
	name string // the mapping's function name
	in   *lambda.CreateEventSourceMappingInput
	rec  *invokeRecorder
	// send sends n more records and returns their names, as the
	// recorder names them.
	send func(n int) []string
	// ordered: names are "<key>/<seq>" and the source keeps each key's
	// order.
	ordered bool
	// leased: the lanes are leased in the store (a stream); 0 for
	// sources whose broker spreads the records.
	leased int
	// bound is how many duplicate deliveries the scenario allows; why is
	// said where it is set.
	bound int
	// takeover: the records sent around the kill are read by the other
	// workers while the killed one is down (false for Kafka: a dead
	// static member keeps its partitions until it restarts or its
	// session expires, franz-go's default SessionTimeout of 45 s).
	takeover bool

	uuid string
	sent []string
}

// missing returns how many of the records sent were not delivered yet.
func (s *fleetSource) missing() int {
	got := map[string]bool{}
	for _, k := range s.rec.deliveries() {
		got[k] = true
	}
	n := 0
	for _, k := range s.sent {
		if !got[k] {
			n++
		}
	}
	return n
}

// ddbKeySeqs names each record of a DynamoDB Streams event "<pk>/<n>".
func ddbKeySeqs(body []byte) ([]string, error) {
	var ev ddbNumbered
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	out := make([]string, len(ev.Records))
	for i, r := range ev.Records {
		out[i] = r.Dynamodb.Keys["pk"].S + "/" + r.Dynamodb.NewImage["n"].N
	}
	return out, nil
}

// TestWorkersShareEverySource runs the scale-out scenario of
// TestWorkersShareKinesisShards with a mapping of each other source on
// its server: Kafka (kfake; the workers are members of the mapping's
// consumer group), RabbitMQ and ActiveMQ (competing consumers), DynamoDB
// Streams (the in-repo server; 4 shards leased as Kinesis shards are) and
// DocumentDB (the in-repo MongoDB server; the change stream is one leased
// lane). Three workers on one PostgreSQL store; the worker holding the
// DocumentDB lease is killed (SIGKILL) while records flow, restarts, a
// fourth joins, and every mapping is disabled through the fourth's API.
// Every record is delivered at least once, each key's records in order
// where the source promises it (Kafka per key, DynamoDB Streams per item
// key, DocumentDB in stream order), duplicates within each source's bound,
// and nothing is read once disabled.
func TestWorkersShareEverySource(t *testing.T) {
	testenv.Skip(t)
	ctx := context.Background()
	const batch = 5
	const ttl = 3 * time.Second
	dir := t.TempDir()
	secret := "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	secrets, _ := json.Marshal(map[string]map[string]string{
		secret + "rmq":   {"username": testenv.RabbitMQUser, "password": testenv.RabbitMQPassword},
		secret + "amq":   {"username": testenv.ActiveMQUser, "password": testenv.ActiveMQPassword},
		secret + "docdb": {"username": testenv.MongoUser, "password": testenv.MongoPassword}})
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	basicAuth := func(name string) []types.SourceAccessConfiguration {
		return []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(secret + name)}}
	}
	var sources []*fleetSource

	// Kafka: 6 keys over 3 partitions. Duplicates: esmd commits a batch
	// while its partition's next one is invoked, so a member that stops
	// (killed) or gives a partition up (rebalance) redelivers at most two
	// batches per partition; three membership changes (kill, restart,
	// join) over 3 partitions: 3 x 3 x 2 x BatchSize.
	seeds := testenv.Kafka(t)
	kcl, topic := newKafkaTopic(t, ctx, seeds, "workers")
	kafkaSeq := 0
	sources = append(sources, &fleetSource{name: "kafka", rec: newInvokeRecorder(kafkaKeySeqs), ordered: true,
		bound: 3 * 3 * 2 * batch,
		in: &lambda.CreateEventSourceMappingInput{Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon,
			SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
			SourceAccessConfigurations: []types.SourceAccessConfiguration{
				{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}}},
		send: func(n int) []string {
			var recs []*kgo.Record
			var ids []string
			const keys = 6
			for len(ids) < n {
				for k := range keys {
					recs = append(recs, &kgo.Record{Partition: int32(k % 3), Key: []byte("k" + strconv.Itoa(k)),
						Value: fmt.Appendf(nil, `{"k":%d,"s":%d}`, k, kafkaSeq)})
					ids = append(ids, fmt.Sprintf("k%d/%d", k, kafkaSeq))
				}
				kafkaSeq++
			}
			if err := kcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			return ids
		}})

	// RabbitMQ: no order across competing consumers. Duplicates: the
	// killed worker's unacknowledged deliveries come back, at most its
	// consumers' prefetch: 4 consumers x BatchSize.
	rb := testenv.RabbitMQ(t)
	rmqARN := "arn:aws:mq:us-east-1:000000000000:broker:workers:b-r1"
	rch, err := rb.Dial(t, "/").Channel()
	if err != nil {
		t.Fatal(err)
	}
	rq := fmt.Sprintf("workers-%d", time.Now().UnixNano())
	if _, err := rch.QueueDeclare(rq, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	rmqSeq := 0
	sources = append(sources, &fleetSource{name: "rabbitmq", rec: newInvokeRecorder(rmqKeys), takeover: true,
		bound: 4 * batch,
		in:    &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(rmqARN), Queues: []string{rq}, SourceAccessConfigurations: basicAuth("rmq")},
		send: func(n int) []string {
			var ids []string
			for range n {
				id := fmt.Sprintf("r-%d", rmqSeq)
				rmqSeq++
				if err := rch.PublishWithContext(ctx, "", rq, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(id)}); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			return ids
		}})

	// ActiveMQ: no order across competing consumers. Duplicates: the
	// killed worker's invocations in flight, 5 lanes x BatchSize (the
	// prefetched messages it had not invoked come back but reach the
	// function once).
	ab := testenv.ActiveMQ(t)
	amqARN := "arn:aws:mq:us-east-1:000000000000:broker:workers:b-a1"
	stompConn := ab.Dial(t)
	aq := fmt.Sprintf("workers-%d", time.Now().UnixNano())
	amqSeq := 0
	sources = append(sources, &fleetSource{name: "activemq", rec: newInvokeRecorder(amqKeys), takeover: true,
		bound: 5 * batch,
		in:    &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(amqARN), Queues: []string{aq}, SourceAccessConfigurations: basicAuth("amq")},
		send: func(n int) []string {
			var ids []string
			for range n {
				id := fmt.Sprintf("a-%d", amqSeq)
				amqSeq++
				if err := stompConn.Send("/queue/"+aq, "", []byte(id), stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.NoContentLength); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			return ids
		}})

	// DynamoDB Streams: 8 item keys over 4 leased shards, checkpoints
	// written before a batch is released (--dynamodb-checkpoint-interval
	// 0s). Duplicates: a shard that changes hands is read again from its
	// checkpoint, so at most the batch in flight on it (ParallelizationFactor
	// 1) comes again; the kill, the restart and the join each move at
	// most the 4 shards: 3 x 4 x BatchSize.
	ds, err := ddbstreams.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", ds.URL())
	ddbARN, err := ds.CreateStream(ddbstreams.StreamConfig{Table: "workers", Shards: 4,
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}}})
	if err != nil {
		t.Fatal(err)
	}
	ddbSeq := 0
	sources = append(sources, &fleetSource{name: "dynamodb", rec: newInvokeRecorder(ddbKeySeqs), ordered: true, leased: 4, takeover: true,
		bound: 3 * 4 * batch,
		in:    &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(ddbARN), StartingPosition: types.EventSourcePositionTrimHorizon},
		send: func(n int) []string {
			var ids []string
			for len(ids) < n {
				for k := range 8 {
					pk := &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("k%d", k)}
					if _, err := ds.Put(ddbARN, ddbstreams.Change{EventName: ddbtypes.OperationTypeModify,
						Keys:     map[string]ddbtypes.AttributeValue{"pk": pk},
						NewImage: map[string]ddbtypes.AttributeValue{"pk": pk, "n": &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(ddbSeq)}}}); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, fmt.Sprintf("k%d/%d", k, ddbSeq))
				}
				ddbSeq++
			}
			return ids
		}})

	// DocumentDB: one change stream, one leased lane, in stream order,
	// checkpoints written before a batch is released
	// (--docdb-checkpoint-interval 0s). Duplicates: the lane moves only
	// when its holder dies (a standby takes it after the lease expires;
	// restarts and joins do not move it), and the successor reads again
	// at most the batch in flight: BatchSize.
	ms := testenv.Mongo(t)
	coll := mongoClient(t, ms).Database("workers").Collection(fmt.Sprintf("c_%d", time.Now().UnixNano()))
	insertBodies(t, coll, "d/0") // creates the collection, read from TRIM_HORIZON
	cluster := "arn:aws:rds:us-east-1:000000000000:cluster:workers"
	docSeq := 1
	docdb := &fleetSource{name: "docdb", rec: newInvokeRecorder(docdbKeys), ordered: true, leased: 1, takeover: true,
		bound: batch, sent: []string{"d/0"},
		in: &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(cluster), StartingPosition: types.EventSourcePositionTrimHorizon,
			DocumentDBEventSourceConfig: &types.DocumentDBEventSourceConfig{DatabaseName: aws.String("workers"), CollectionName: aws.String(coll.Name())},
			SourceAccessConfigurations:  basicAuth("docdb")},
		send: func(n int) []string {
			var ids []string
			for range n {
				ids = append(ids, fmt.Sprintf("d/%d", docSeq))
				docSeq++
			}
			insertBodies(t, coll, ids...)
			return ids
		}}
	sources = append(sources, docdb)

	recs := map[string]http.Handler{}
	for _, s := range sources {
		recs[s.name] = s.rec
	}
	// The Invoke path is /2015-03-31/functions/FUNCTION/invocations,
	// FUNCTION a name or an ARN ending in it.
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		if len(parts) > 3 {
			name := parts[3][strings.LastIndex(parts[3], ":")+1:]
			if h := recs[name]; h != nil {
				h.ServeHTTP(w, r)
				return
			}
		}
		t.Errorf("invoked at %s", r.URL.Path)
		http.NotFound(w, r)
	}))
	defer fn.Close()
	f := newWorkerFleet(t, fn.URL, ttl.String(),
		"--mq-broker", rmqARN+"=amqp://"+rb.Addr, "--mq-broker", amqARN+"=stomp://"+ab.STOMPAddr,
		"--docdb-cluster", cluster+"="+ms.URI()+"&tls=false", "--secrets-file", filepath.Join(dir, "secrets.json"),
		"--dynamodb-checkpoint-interval", "0s", "--docdb-checkpoint-interval", "0s")
	ids := []string{"w1", "w2", "w3"}
	for _, id := range ids {
		f.start(id)
	}
	for i, s := range sources {
		s.in.FunctionName, s.in.BatchSize = aws.String(s.name), aws.Int32(batch)
		out, err := client(f.addrs[ids[i%3]]).CreateEventSourceMapping(ctx, s.in)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		s.uuid = aws.ToString(out.UUID)
	}
	send := func(n int) {
		for _, s := range sources {
			s.sent = append(s.sent, s.send(n)...)
		}
	}
	// deliveredAll waits until every source's records were delivered and
	// returns, for each, when they were, since the last kill.
	var killed time.Time
	deliveredAll := func(which func(*fleetSource) bool) map[string]time.Duration {
		t.Helper()
		start, took := killed, map[string]time.Duration{}
		testenv.Eventually(t, 90*time.Second, func(context.Context) error {
			var late []string
			for _, s := range sources {
				if !which(s) {
					continue
				}
				if n := s.missing(); n > 0 {
					late = append(late, fmt.Sprintf("%s: %d of %d", s.name, n, len(s.sent)))
				} else if _, ok := took[s.name]; !ok {
					took[s.name] = time.Since(start).Round(time.Millisecond)
				}
			}
			if late != nil {
				return fmt.Errorf("records not delivered: %v", late)
			}
			return nil
		})
		return took
	}
	every := func(*fleetSource) bool { return true }
	// docdbHolder waits until the DocumentDB lane is held by a live worker
	// and returns it.
	docdbHolder := func() string {
		t.Helper()
		holder := ""
		testenv.Eventually(t, 60*time.Second, func(context.Context) error {
			owners, err := f.lanes(docdb.uuid)
			if err != nil {
				return err
			}
			for _, w := range owners {
				if _, live := f.addrs[w]; live {
					holder = w
					return nil
				}
			}
			return fmt.Errorf("DocumentDB lane held by %v", owners)
		})
		return holder
	}
	send(30)
	deliveredAll(every)
	for _, s := range sources {
		if s.leased > 1 {
			counts, _ := f.settled(s.uuid, s.leased)
			t.Logf("%s: shards per worker %v", s.name, counts)
		}
	}

	// SIGKILL the DocumentDB lane's holder while records flow: its lanes
	// move once their leases expire, its queue deliveries come back to
	// the others.
	victim := docdbHolder()
	send(30)
	f.kill(victim)
	killed = time.Now()
	send(30)
	took := deliveredAll(func(s *fleetSource) bool { return s.takeover })
	t.Logf("%s killed (SIGKILL, lease time %v): every record sent around the kill delivered by the others within %v of the kill",
		victim, ttl, took)
	for _, s := range sources {
		if s.leased > 1 {
			counts, _ := f.settled(s.uuid, s.leased)
			t.Logf("%s: the killed worker's shards held by the others %v after the kill: %v", s.name, time.Since(killed).Round(time.Millisecond), counts)
		}
	}
	t.Logf("docdb: the lane held by %s after the kill", docdbHolder())

	// It restarts (Kafka's partitions come back to it as the same static
	// member); a fourth worker joins.
	f.start(victim)
	t.Logf("%s restarted %v after the kill", victim, time.Since(killed).Round(time.Millisecond))
	took = deliveredAll(every)
	t.Logf("%s restarted: every record delivered within %v of the kill", victim, took)
	f.start("w4")
	send(30)
	deliveredAll(every)
	for _, s := range sources {
		if s.leased > 1 {
			counts, _ := f.settled(s.uuid, s.leased)
			t.Logf("%s: w4 joined, shards per worker %v", s.name, counts)
		}
	}
	send(30)
	deliveredAll(every)

	for _, s := range sources {
		order := s.rec.deliveries()
		if s.ordered {
			if err := keyOrder(order); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		}
		dups := duplicates(order)
		t.Logf("%s: %d records, all delivered; %d deliveries, %d duplicates (bound %d)", s.name, len(s.sent), len(order), dups, s.bound)
		if dups > s.bound {
			t.Errorf("%s: %d duplicate deliveries, more than the bound %d", s.name, dups, s.bound)
		}
	}

	// Disabled through w4, which created none of them: every worker stops
	// every mapping, leased lanes are let go, and nothing more is read.
	c4 := client(f.addrs["w4"])
	for _, s := range sources {
		if _, err := c4.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: &s.uuid, Enabled: aws.Bool(false)}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		for id, addr := range f.addrs {
			for _, s := range sources {
				got, err := client(addr).GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: &s.uuid})
				if err != nil || aws.ToString(got.State) != "Disabled" {
					return fmt.Errorf("%s: %s not Disabled (%v)", id, s.name, err)
				}
			}
		}
		for _, s := range sources {
			if s.leased == 0 {
				continue
			}
			if owners, err := f.lanes(s.uuid); err != nil || len(owners) != 0 {
				return fmt.Errorf("%s: leases held after disable: %v %v", s.name, owners, err)
			}
		}
		return nil
	})
	before := map[string]int{}
	for _, s := range sources {
		_, before[s.name], _ = s.rec.count()
	}
	send(5)
	// A negative check: nothing is read while disabled (two seconds: a
	// running worker reads within milliseconds).
	testenv.Consistently(t, 2*time.Second, func(context.Context) error {
		for _, s := range sources {
			if _, n, _ := s.rec.count(); n != before[s.name] {
				return fmt.Errorf("%s: %d records delivered while disabled", s.name, n-before[s.name])
			}
		}
		return nil
	})
}
