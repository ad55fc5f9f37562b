package kinesis_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

type reporter struct{}

func (reporter) ProcessingResult(string) {}
func (reporter) Disable(string)          {}

// orderInvoker records the records of each event, per partition key, and
// how many events of one shard ran at once.
type orderInvoker struct {
	mu       sync.Mutex
	byKey    map[string][]int
	inFlight map[string]int
	maxIn    int
	ids      map[int]string // eventID by record number
}

func (o *orderInvoker) Invoke(_ context.Context, _ string, payload []byte) (dispatcher.Result, error) {
	var ev struct {
		Records []struct {
			EventID string `json:"eventID"`
			Kinesis struct {
				PartitionKey string `json:"partitionKey"`
				Data         string `json:"data"`
			} `json:"kinesis"`
		}
	}
	if err := json.Unmarshal(payload, &ev); err != nil || len(ev.Records) == 0 {
		return dispatcher.Result{StatusCode: 200}, nil
	}
	shard, _, _ := strings.Cut(ev.Records[0].EventID, ":")
	o.mu.Lock()
	o.inFlight[shard]++
	o.maxIn = max(o.maxIn, o.inFlight[shard])
	for _, r := range ev.Records {
		b, _ := base64.StdEncoding.DecodeString(r.Kinesis.Data)
		var n int
		fmt.Sscan(string(b), &n)
		o.byKey[r.Kinesis.PartitionKey] = append(o.byKey[r.Kinesis.PartitionKey], n)
		if o.ids != nil {
			o.ids[n] = r.EventID
		}
	}
	o.mu.Unlock()
	// The function's work, simulated on purpose: it lets events of one
	// shard overlap, as ParallelizationFactor > 1 should let them (maxIn).
	time.Sleep(2 * time.Millisecond)
	o.mu.Lock()
	o.inFlight[shard]--
	o.mu.Unlock()
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

// ParallelizationFactor 1, 2 and 10 through the real pipeline: every record
// delivered once, in order per partition key, and each shard checkpointed
// at its last record.
func TestParallelizationFactorKeyOrder(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 2)
	const n, keys = 2000, 40
	last := map[string]string{}
	for start := 0; start < n; start += 500 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < start+500; i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("key-%d", i%keys)), Data: []byte(fmt.Sprint(i))})
		}
		out, err := c.PutRecords(context.Background(), &awskinesis.PutRecordsInput{StreamName: &name, Records: entries})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %v (%d failed)", err, aws.ToInt32(out.FailedRecordCount))
		}
		for _, r := range out.Records {
			last[aws.ToString(r.ShardId)] = aws.ToString(r.SequenceNumber)
		}
	}
	for _, pf := range []int64{1, 2, 10} {
		t.Run(fmt.Sprintf("PF%d", pf), func(t *testing.T) {
			st := openStore(t)
			inv := &orderInvoker{byKey: map[string][]int{}, inFlight: map[string]int{}}
			m := &esm.Mapping{UUID: fmt.Sprintf("pf-%d", pf), FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:function",
				Source: esm.SourceKinesis, Config: esm.Config{EventSourceArn: &arn, BatchSize: aws.Int64(20),
					ParallelizationFactor: aws.Int64(pf), StartingPosition: aws.String("TRIM_HORIZON")}}
			r := &pipeline.Runner{Source: kinesis.Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
				return kinesis.New(ctx, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Mapping: m.UUID, Positions: st,
					EmptyWait: 20 * time.Millisecond, MaxWait: 100 * time.Millisecond}})
			}}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, m, reporter{}) }()
			defer func() { cancel(); <-done }()
			testenv.Eventually(t, 40*time.Second, func(ctx context.Context) error {
				got, err := st.Positions(ctx, m.UUID)
				if err != nil {
					return err
				}
				for shard, seq := range last {
					if got[shard] != seq {
						return fmt.Errorf("shard %s checkpoint %q, want %q", shard, got[shard], seq)
					}
				}
				return nil
			})
			inv.mu.Lock()
			defer inv.mu.Unlock()
			total := 0
			for k, ns := range inv.byKey {
				total += len(ns)
				for i := 1; i < len(ns); i++ {
					if ns[i] <= ns[i-1] {
						t.Fatalf("key %s: record %d after %d", k, ns[i], ns[i-1])
					}
				}
			}
			if total != n {
				t.Fatalf("%d records delivered, want %d", total, n)
			}
			if pf > 1 && inv.maxIn < 2 {
				t.Errorf("ParallelizationFactor %d: at most %d events of a shard at once", pf, inv.maxIn)
			}
			t.Logf("PF %d: up to %d concurrent events per shard", pf, inv.maxIn)
		})
	}
}

// A mapping stopped mid-stream and started again on its checkpoints:
// every record delivered at least once, order per key kept within each
// run, and only records after a shard's checkpoint at the stop delivered
// again (with ParallelizationFactor, a sub-lane done ahead of another is
// past the checkpoint, so duplicates are more than the batches in flight).
func TestStopMidStreamAndResume(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 2)
	const n, keys, batch, pf = 1000, 10, 10, 2
	last := map[string]string{}
	for start := 0; start < n; start += 500 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < start+500; i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("key-%d", i%keys)), Data: []byte(fmt.Sprint(i))})
		}
		out, err := c.PutRecords(context.Background(), &awskinesis.PutRecordsInput{StreamName: &name, Records: entries})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %v", err)
		}
		for _, r := range out.Records {
			last[aws.ToString(r.ShardId)] = aws.ToString(r.SequenceNumber)
		}
	}
	st := openStore(t)
	m := &esm.Mapping{UUID: "resume", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:function",
		Source: esm.SourceKinesis, Config: esm.Config{EventSourceArn: &arn, BatchSize: aws.Int64(batch),
			ParallelizationFactor: aws.Int64(pf), StartingPosition: aws.String("TRIM_HORIZON")}}
	run := func(inv *orderInvoker) (stop func()) {
		r := &pipeline.Runner{Source: kinesis.Descriptor(), Invoker: inv, Open: func(ctx context.Context, m *esm.Mapping) (source.Poller, error) {
			return kinesis.New(ctx, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Mapping: m.UUID, Positions: st,
				EmptyWait: 20 * time.Millisecond, MaxWait: 100 * time.Millisecond}})
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, m, reporter{}) }()
		return func() { cancel(); <-done }
	}
	first := &orderInvoker{byKey: map[string][]int{}, inFlight: map[string]int{}, ids: map[int]string{}}
	stop := run(first)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		first.mu.Lock()
		defer first.mu.Unlock()
		got := 0
		for _, ns := range first.byKey {
			got += len(ns)
		}
		if got < n/4 {
			return fmt.Errorf("%d records delivered", got)
		}
		return nil
	})
	stop()
	cps, err := st.Positions(context.Background(), m.UUID)
	if err != nil {
		t.Fatal(err)
	}
	second := &orderInvoker{byKey: map[string][]int{}, inFlight: map[string]int{}}
	stop = run(second)
	defer stop()
	testenv.Eventually(t, 40*time.Second, func(ctx context.Context) error {
		got, err := st.Positions(ctx, m.UUID)
		if err != nil {
			return err
		}
		for shard, seq := range last {
			if got[shard] != seq {
				return fmt.Errorf("shard %s checkpoint %q, want %q", shard, got[shard], seq)
			}
		}
		return nil
	})
	seen := map[int]int{}
	for _, inv := range []*orderInvoker{first, second} {
		inv.mu.Lock()
		for k, ns := range inv.byKey {
			for i, x := range ns {
				if i > 0 && x <= ns[i-1] {
					t.Fatalf("key %s: record %d after %d", k, x, ns[i-1])
				}
				seen[x]++
			}
		}
		inv.mu.Unlock()
	}
	dups := 0
	for i := range n {
		if seen[i] == 0 {
			t.Fatalf("record %d never delivered", i)
		}
		dups += seen[i] - 1
	}
	for x, count := range seen {
		if count < 2 {
			continue
		}
		shard, seq, _ := strings.Cut(first.ids[x], ":")
		a, _ := new(big.Int).SetString(seq, 10)
		cp, ok := new(big.Int).SetString(cps[shard], 10)
		if a == nil || ok && a.Cmp(cp) <= 0 {
			t.Fatalf("record %d (%s) delivered again but was at or before its shard's checkpoint %s", x, first.ids[x], cps[shard])
		}
	}
	t.Logf("%d duplicates after the restart", dups)
}
