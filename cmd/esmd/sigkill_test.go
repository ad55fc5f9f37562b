package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/kafka"
)

// kills is how many times the repeated-SIGKILL tests kill esmd.
const kills = 10

// killRepeatedly SIGKILLs the esmd process kills times and starts it again
// on the same arguments (its data directory) each time, once the function
// has received progress more deliveries since the last start: each kill
// lands while records flow, and after the restarted esmd resumed. It
// returns the last process, which the test's cleanup kills, and, for each
// restart, how long after the restarted esmd listened the function had
// progress more deliveries.
func killRepeatedly(t *testing.T, bin string, args []string, cmd *exec.Cmd, rec *invokeRecorder, progress int) (*exec.Cmd, []time.Duration) {
	t.Helper()
	var resumed []time.Duration
	for i := range kills {
		n := len(rec.deliveries())
		start := time.Now()
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			if got := len(rec.deliveries()) - n; got < progress {
				return fmt.Errorf("kill %d: %d deliveries since the last start, want %d", i+1, got, progress)
			}
			return nil
		})
		if i > 0 {
			resumed = append(resumed, time.Since(start))
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		cmd, _ = startBinary(t, bin, args...)
	}
	return cmd, resumed
}

// duplicates returns how many deliveries repeated a record.
func duplicates(order []string) int {
	seen := make(map[string]bool, len(order))
	dups := 0
	for _, k := range order {
		if seen[k] {
			dups++
		}
		seen[k] = true
	}
	return dups
}

// producer sends records until stop is called, which returns what it
// sent: the records of produce(i) for i = 0, 1, 2, ...
type producer struct {
	stop func() []string
}

func produce(t *testing.T, every time.Duration, send func(ctx context.Context, i int) ([]string, error)) *producer {
	var (
		mu   sync.Mutex
		sent []string
		done = make(chan struct{})
		quit = make(chan struct{})
	)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-time.After(every):
			}
			ids, err := send(ctx, i)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("produce: %v", err)
				}
				return
			}
			mu.Lock()
			sent = append(sent, ids...)
			mu.Unlock()
		}
	}()
	p := &producer{stop: func() []string {
		close(quit)
		<-done
		cancel()
		mu.Lock()
		defer mu.Unlock()
		return sent
	}}
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			p.stop()
		}
	})
	return p
}

// waitAll waits until every record of want was delivered.
func waitAll(t *testing.T, rec *invokeRecorder, want []string) {
	t.Helper()
	testenv.Eventually(t, 45*time.Second, func(context.Context) error {
		got := map[string]bool{}
		for _, k := range rec.deliveries() {
			got[k] = true
		}
		missing := 0
		for _, k := range want {
			if !got[k] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d records not delivered", missing, len(want))
		}
		return nil
	})
}

// keyOrder checks deliveries named "<key>/<seq>", seq counting from 0
// per key: a key's records arrive in sequence, a record coming again only
// after an earlier one came again (a step back to a checkpoint or a
// committed offset), never one delivered ahead of a record not yet
// delivered.
func keyOrder(order []string) error {
	next := map[string]int{} // per key, the next sequence number never delivered
	for _, d := range order {
		key, seq, _ := strings.Cut(d, "/")
		s, err := strconv.Atoi(seq)
		if err != nil {
			return fmt.Errorf("delivery %q: %w", d, err)
		}
		if s > next[key] {
			return fmt.Errorf("key %s: record %d delivered before record %d", key, s, next[key])
		}
		if s == next[key] {
			next[key]++
		}
	}
	return nil
}

// kafkaKeySeqs names each record of a Kafka event by its value,
// {"k":key,"s":seq}: "k<key>/<seq>".
func kafkaKeySeqs(body []byte) ([]string, error) {
	return kafkaEventKeys(body, func(_ string, kr events.KafkaRecord) (string, error) {
		raw, err := base64.StdEncoding.DecodeString(kr.Value)
		if err != nil {
			return "", err
		}
		var v struct{ K, S int }
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", err
		}
		return fmt.Sprintf("k%d/%d", v.K, v.S), nil
	})
}

// TestKafkaRepeatedSIGKILL kills esmd (the real binary) 10 times while
// records flow into a 3-partition topic and a function records every
// record it gets. Nothing is lost: every record produced reaches the
// function. Order holds per key: a key's records reach the function in
// sequence, a record coming again only after the kill that cut its batch
// short (never one delivered ahead of an earlier one). Duplicates are
// bounded by the batches in flight or uncommitted at each kill: esmd
// commits a batch while its partition's next one is invoked (batches
// finishing within 20 ms share a commit) and lets no partition have more
// than 8 finished batches uncommitted, and a restarted worker takes its
// partitions back as a static group member, so a kill redelivers at most
// kafka.MaxRedeliveredBatches per partition: kills x 3 partitions x 9 x
// BatchSize 5.
func TestKafkaRepeatedSIGKILL(t *testing.T) {
	testenv.Skip(t)
	seeds := testenv.Kafka(t)
	bin := buildBinary(t)
	rec := newInvokeRecorder(kafkaKeySeqs)
	fn := httptest.NewServer(rec)
	defer fn.Close()
	ctx := context.Background()
	cl, topic := newKafkaTopic(t, ctx, seeds, "kills")
	const keys, partitions, batch = 12, 3, 5
	prod := produce(t, 5*time.Millisecond, func(ctx context.Context, i int) ([]string, error) {
		var recs []*kgo.Record
		var ids []string
		for k := range keys {
			recs = append(recs, &kgo.Record{Partition: int32(k % partitions), Key: []byte("k" + strconv.Itoa(k)),
				Value: fmt.Appendf(nil, `{"k":%d,"s":%d}`, k, i)})
			ids = append(ids, fmt.Sprintf("k%d/%d", k, i))
		}
		return ids, cl.ProduceSync(ctx, recs...).FirstErr()
	})

	args := []string{"--data-dir", t.TempDir(), "--lambda-endpoint", fn.URL, "--function-check", "never"}
	cmd, addr := startBinary(t, bin, args...)
	if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(batch),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}}}); err != nil {
		t.Fatal(err)
	}
	_, resumed := killRepeatedly(t, bin, args, cmd, rec, 3*keys)
	sent := prod.stop()
	waitAll(t, rec, sent)

	order := rec.deliveries()
	if err := keyOrder(order); err != nil {
		t.Fatal(err)
	}
	dups, bound := duplicates(order), kills*partitions*kafka.MaxRedeliveredBatches*batch
	t.Logf("%d kills: %d records produced, all delivered; %d deliveries, %d duplicates (bound %d); %d more deliveries within %v of each restart",
		kills, len(sent), len(order), dups, bound, 3*keys, resumed)
	if dups > bound {
		t.Errorf("%d duplicate deliveries over %d kills, more than the batches in flight allow (%d)", dups, kills, bound)
	}
}

// sqsBodyKeys names each record of an SQS event by its body.
func sqsBodyKeys(body []byte) ([]string, error) {
	var ev events.SQSEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	out := make([]string, len(ev.Records))
	for i, r := range ev.Records {
		out[i] = r.Body
	}
	return out, nil
}

// TestSQSRepeatedSIGKILL kills esmd (the real binary) 10 times while
// messages flow into a standard queue on fauxqs and a function records
// every message it gets. Nothing is lost: every message sent reaches the
// function (those a kill left in flight come back after the queue's
// visibility timeout). Duplicates are bounded by the batches in flight at
// each kill, whose messages were invoked but not yet deleted: with
// MaximumConcurrency 2 and BatchSize 5, kills x 2 x 5. Messages received
// but not yet invoked come back too, but reach the function once.
func TestSQSRepeatedSIGKILL(t *testing.T) {
	testenv.Skip(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	url, arn := sqsQueue(t, sc, "kills", map[string]string{"VisibilityTimeout": "2"})
	bin := buildBinary(t)
	rec := newInvokeRecorder(sqsBodyKeys)
	fn := httptest.NewServer(rec)
	defer fn.Close()
	ctx := context.Background()
	const concurrency, batch = 2, 5
	prod := produce(t, 5*time.Millisecond, func(ctx context.Context, i int) ([]string, error) {
		var entries []sqstypes.SendMessageBatchRequestEntry
		var ids []string
		for j := range 10 {
			id := fmt.Sprintf("m-%d-%d", i, j)
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(id)})
			ids = append(ids, id)
		}
		out, err := sc.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err == nil && len(out.Failed) > 0 {
			err = fmt.Errorf("%d messages refused", len(out.Failed))
		}
		return ids, err
	})

	args := []string{"--data-dir", t.TempDir(), "--lambda-endpoint", fn.URL, "--function-check", "never"}
	cmd, addr := startBinary(t, bin, args...)
	if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), BatchSize: aws.Int32(batch),
		ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(concurrency)}}); err != nil {
		t.Fatal(err)
	}
	_, resumed := killRepeatedly(t, bin, args, cmd, rec, 30)
	sent := prod.stop()
	waitAll(t, rec, sent)

	order := rec.deliveries()
	dups, bound := duplicates(order), kills*concurrency*batch
	t.Logf("%d kills: %d messages sent, all delivered; %d deliveries, %d duplicates (bound %d); %d more deliveries within %v of each restart",
		kills, len(sent), len(order), dups, bound, 30, resumed)
	if dups > bound {
		t.Errorf("%d duplicate deliveries over %d kills, more than the batches in flight allow (%d)", dups, kills, bound)
	}
}
