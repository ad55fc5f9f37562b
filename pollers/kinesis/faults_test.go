package kinesis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/stream"
)

// faulty is the real client with GetRecords failures injected: neither
// emulator throttles or expires iterators on its own.
type faulty struct {
	*awskinesis.Client
	mu        sync.Mutex
	faults    []error // returned by the next GetRecords calls, in order
	iterators int
}

func (f *faulty) GetRecords(ctx context.Context, in *awskinesis.GetRecordsInput, o ...func(*awskinesis.Options)) (*awskinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	if len(f.faults) > 0 {
		err := f.faults[0]
		f.faults = f.faults[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Client.GetRecords(ctx, in, o...)
}

func (f *faulty) GetShardIterator(ctx context.Context, in *awskinesis.GetShardIteratorInput, o ...func(*awskinesis.Options)) (*awskinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	f.iterators++
	f.mu.Unlock()
	return f.Client.GetShardIterator(ctx, in, o...)
}

func (f *faulty) inject(errs ...error) {
	f.mu.Lock()
	f.faults = append(f.faults, errs...)
	f.mu.Unlock()
}

// Throttling backs off and keeps the iterator; an expired iterator is
// renewed after the last record read: nothing is lost or read twice.
func TestThrottledAndExpiredIterator(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	f := &faulty{Client: c}
	for i := range 5 {
		put(t, c, name, "k", fmt.Sprintf("r%d", i))
	}
	msg := "Rate exceeded for shard"
	f.inject(&types.ProvisionedThroughputExceededException{Message: &msg}, &types.ProvisionedThroughputExceededException{Message: &msg})
	p, err := kinesis.New(context.Background(), f, kinesis.Config{Common: stream.Common{StreamARN: arn, Mapping: "m", Positions: openStore(t),
		EmptyWait: 20 * time.Millisecond, MaxWait: 100 * time.Millisecond, Limit: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := pollN(t, p, 5, 20*time.Second)
	f.mu.Lock()
	if f.iterators != 1 {
		t.Errorf("%d GetShardIterator calls after throttling, want 1 (the iterator is kept)", f.iterators)
	}
	f.mu.Unlock()
	exp := "Iterator expired"
	f.inject(&types.ExpiredIteratorException{Message: &exp})
	for i := 5; i < 10; i++ {
		put(t, c, name, "k", fmt.Sprintf("r%d", i))
	}
	got = append(got, pollN(t, p, 5, 20*time.Second)...)
	// Nothing read twice after the renewed iterator: the shard is read
	// every 100 ms at most (MaxWait), so a repeat would come within 300 ms.
	pollNone(t, p, 300*time.Millisecond)
	for i, r := range got {
		if want := fmt.Sprintf("r%d", i); body(t, r) != want {
			t.Fatalf("record %d is %s, want %s", i, body(t, r), want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.iterators != 2 {
		t.Errorf("%d GetShardIterator calls, want 2 (renewed once after expiry)", f.iterators)
	}
}
