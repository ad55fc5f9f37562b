package source

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Poller is what the pipeline needs from a source. Each source package
// returns a concrete type with these methods; pollers/pollertest checks
// them against the contract with the source's real server.
type Poller interface {
	// Poll blocks until it has read some records (of any lanes) or ctx is
	// done. Records of one lane come in lane order. It returns ctx.Err()
	// when cancelled.
	Poll(ctx context.Context) ([]Record, error)
	// Ack reports the outcome of records the poller handed out, in the
	// style of benthos's AckFunc:
	//   - outcome nil: every record is finished (delivered, filtered out,
	//     or accepted by the OnFailure destination). The poller makes that
	//     durable in its own terms: delete (SQS), ack (MQ), commit (Kafka),
	//     checkpoint (streams). An ordered poller never checkpoints past a
	//     record it has not been told is finished.
	//   - outcome a *BatchError: the records it marks failed go back to the
	//     broker, the others are finished.
	//   - any other error: every record failed and goes back to the broker
	//     (visibility timeout, nack with requeue).
	// Only queue sources (Delivery Queue) are told of failures: the failures
	// of ordered sources go through the retry policy, and what is never
	// acknowledged is read again after a restart.
	Ack(ctx context.Context, recs []Record, outcome error) error
	// Close releases the poller's resources. Records handed out and not
	// acknowledged are redelivered by the source later (at least once).
	Close() error
}

// Delivery says how a source finishes records, which decides how the
// pipeline handles a failed batch.
type Delivery uint8

const (
	// Ordered sources (Kinesis, DynamoDB Streams, Kafka, DocumentDB) keep a
	// position per lane: a failed batch goes through the retry policy
	// (retries, record age, bisect, partial responses, OnFailure), and the
	// lane waits for it.
	Ordered Delivery = iota
	// Queue sources (SQS, Amazon MQ) hand a failed record back to their
	// broker, which redelivers it later and whose redrive policy ends its
	// life; other records of the lane go on.
	Queue
)

func (d Delivery) String() string {
	switch d {
	case Ordered:
		return "ordered"
	case Queue:
		return "queue"
	}
	return fmt.Sprintf("Delivery(%d)", uint8(d))
}

// ErrFailed is the outcome of a batch whose every record failed without a
// more specific reason (a function error).
var ErrFailed = errors.New("function call failed")

// ErrStopped is the outcome of records the pipeline gives up because it is
// stopping (disable, update, delete, shutdown): never invoked, or invoked
// past the stop's drain timeout. A queue source makes them visible again
// at once rather than after a failure's delay; an ordered source leaves
// them unfinished, to be read again.
var ErrStopped = errors.New("the mapping is stopping")

// BatchError marks records of a batch failed by their index in it, in the
// style of benthos's batch.Error: one value for the outcome of every
// record. The records it does not mark succeeded.
type BatchError struct {
	err    error
	failed map[int]error
}

// NewBatchError returns a BatchError whose Error is err (ErrFailed when
// nil) and that marks no record yet.
func NewBatchError(err error) *BatchError {
	if err == nil {
		err = ErrFailed
	}
	return &BatchError{err: err, failed: map[int]error{}}
}

// Failed marks the record at index i failed with err (the batch's error
// when nil) and returns e.
func (e *BatchError) Failed(i int, err error) *BatchError {
	if err == nil {
		err = e.err
	}
	e.failed[i] = err
	return e
}

// IndexedErr returns the error of the record at index i, nil when it
// succeeded.
func (e *BatchError) IndexedErr(i int) error { return e.failed[i] }

// Len returns how many records are marked failed (0 for a nil e).
func (e *BatchError) Len() int {
	if e == nil {
		return 0
	}
	return len(e.failed)
}

// Indexes returns the failed indexes in increasing order.
func (e *BatchError) Indexes() []int {
	out := make([]int, 0, len(e.failed))
	for i := range e.failed {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

// Error implements error.
func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d records failed", len(e.failed))
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

// Unwrap returns the batch's error.
func (e *BatchError) Unwrap() error { return e.err }

// Split divides recs by an Ack outcome into the records that are finished
// and those that failed. Both keep the order of recs. It does not copy recs
// when all of them share one outcome.
func Split(recs []Record, outcome error) (done, failed []Record) {
	if outcome == nil {
		return recs, nil
	}
	var be *BatchError
	if !errors.As(outcome, &be) {
		return nil, recs
	}
	if be.Len() == 0 {
		return recs, nil
	}
	for i := range recs {
		if be.IndexedErr(i) != nil {
			failed = append(failed, recs[i])
		} else {
			done = append(done, recs[i])
		}
	}
	return done, failed
}

// AckSplit implements Ack for a poller that finishes records with done and
// hands failed ones back with failed: it splits recs by outcome (Split) and
// calls done, then failed, with the non-empty parts. failed may be nil for
// an ordered source: its failed records are then left unfinished, to be read
// again after a restart.
func AckSplit(ctx context.Context, recs []Record, outcome error,
	done, failed func(context.Context, []Record) error) error {
	ok, bad := Split(recs, outcome)
	var errs []error
	if len(ok) > 0 {
		errs = append(errs, done(ctx, ok))
	}
	if len(bad) > 0 && failed != nil {
		errs = append(errs, failed(ctx, bad))
	}
	return errors.Join(errs...)
}

// LaneHolder is optionally implemented by a Poller whose lanes can be
// taken from it while it runs: a stream shard whose lease another esmd
// worker took over (workers sharing a PostgreSQL store). Before each
// invocation the pipeline asks whether the poller still holds the batch's
// lane, and leaves a batch of a lane it no longer holds unfinished instead
// of invoking it: the lane's new holder reads it again from the
// checkpoint. A worker that was paused past its lease (SIGSTOP, a long GC
// pause, a frozen VM) so never invokes what it read before. Holds must be
// cheap: no I/O.
type LaneHolder interface {
	Holds(lane string) bool
}

// LaneEnder is optionally implemented by a Poller whose lanes end: a shard
// closed by a split or merge and read to its end, a Kafka partition
// revoked. Told of it, the batcher releases the lane's buffered records
// without waiting for the batching window, gives its open tumbling windows
// their final invocation (isWindowTerminatedEarly when before the window's
// end; windows do not carry across resharding, spec STR-30), and forgets
// the lane once its last batch is done.
type LaneEnder interface {
	// EndedLanes returns the lanes that ended since the last call and whose
	// last records were handed out by a Poll that has returned. The
	// pipeline calls it after it has added each Poll's records to the
	// batcher, so a lane never ends before its last records are in; it
	// must be cheap when no lane ended.
	EndedLanes() []string
}
