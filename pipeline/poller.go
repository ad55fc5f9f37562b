package pipeline

import (
	"context"

	"github.com/esmd/esmd/source"
)

// Poller is what a pipeline needs from a source. Each source package
// (pollers/sqs, pollers/kinesis, ...) returns a concrete type that has
// these methods; pollers/pollertest checks them against the contract.
type Poller interface {
	// Poll blocks until it has read some records (of any lanes) or ctx is
	// done. Records of one lane come in lane order. It returns ctx.Err()
	// when cancelled.
	Poll(ctx context.Context) ([]source.Record, error)
	// Done reports records whose processing is finished: delivered, filtered
	// out, or accepted by the OnFailure destination. The poller makes that
	// durable in its own terms (delete, checkpoint, commit, ack). A stream
	// poller never checkpoints past a record it has not been told is done.
	Done(ctx context.Context, recs []source.Record) error
	// Failed hands records of queue sources back to their broker (leave for
	// the visibility timeout, nack with requeue). Ordered sources never get
	// it: their failures go through the retry policy.
	Failed(ctx context.Context, recs []source.Record) error
	// Close releases the poller's resources; unfinished records are
	// redelivered by the source later (at least once).
	Close() error
}
