package batcher_test

import (
	"context"
	"fmt"

	"github.com/esmd/esmd/batcher"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// A dispatcher loop: take a batch, invoke it (here: print it), report it
// done so the lane's next batch can go.
func Example() {
	env := payload.Records("arn:aws:sqs:us-east-1:123456789012:q")
	policy := batcher.Policy{BatchSize: 2} // SQS batches after each invocation, no window
	b, err := batcher.New(policy, env)
	if err != nil {
		panic(err)
	}
	defer b.Close()

	// A poller adds what the filter kept, one poll result at a time.
	var recs []source.Record
	for _, id := range []string{"m1", "m2", "m3"} {
		recs = append(recs, source.Record{Lane: "q", ID: id, Data: []byte(`{"messageId":"` + id + `"}`)})
	}
	if err := b.AddAll(recs); err != nil {
		panic(err)
	}

	ctx := context.Background()
	for range 2 {
		bt, err := b.Next(ctx)
		if err != nil {
			panic(err)
		}
		if bt.Oversize {
			// Never invoked: route bt.Records[0] to failure (spec 2.3),
			// then release the lane.
			_ = b.Done(bt, nil)
			continue
		}
		fmt.Printf("%d records, %d bytes: %s\n", len(bt.Records), bt.Size, bt.AppendEvent(nil))
		if err := b.Done(bt, nil); err != nil { // releases lane "q"
			panic(err)
		}
	}
	// Output:
	// 2 records, 51 bytes: {"Records":[{"messageId":"m1"},{"messageId":"m2"}]}
	// 1 records, 32 bytes: {"Records":[{"messageId":"m3"}]}
}
