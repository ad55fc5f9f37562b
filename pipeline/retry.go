package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/source"
)

// Conditions of an OnFailure invocation record (spec STR-42).
const (
	ConditionRetryAttemptsExhausted = "RetryAttemptsExhausted"
	ConditionRecordAgeExceeded      = "RecordAgeExceeded"
)

// Policy is a mapping's error handling for ordered sources.
type Policy struct {
	// MaxRetryAttempts is MaximumRetryAttempts: retries after the first
	// attempt; -1 retries until the records expire (the default).
	MaxRetryAttempts int64
	// MaxRecordAge is MaximumRecordAgeInSeconds; 0 or less is infinite (-1).
	MaxRecordAge time.Duration
	// Bisect is BisectBatchOnFunctionError.
	Bisect bool
	// PartialResponses is FunctionResponseTypes [ReportBatchItemFailures].
	PartialResponses bool
	// Failures reads a partial batch response and returns the records of
	// recs it reports failed (nil: none), or an error wrapping
	// dispatcher.ErrInvalidBatchResponse when the whole batch failed. Nil
	// reads the SQS/Kinesis/DynamoDB shape, whose itemIdentifier is
	// Record.ID (source.IDFailures); the source's descriptor gives others.
	Failures func(body []byte, recs []source.Record) (*source.BatchError, error)
	// RetryDelay is the first delay before a batch is sent again, doubling
	// up to MaxRetryDelay. Errors before the function ran use it too; a
	// Retry-After from the endpoint wins when longer.
	RetryDelay, MaxRetryDelay time.Duration

	// Now and Sleep are the clock, replaceable in tests.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// InvokeFunc invokes the function with one batch (the caller builds the
// event from the records).
type InvokeFunc func(ctx context.Context, recs []source.Record) (dispatcher.Result, error)

// Discard is a (sub-)batch the policy gave up on.
type Discard struct {
	Records   []source.Record
	Condition string
	// InvokeCount is the approximateInvokeCount of the OnFailure record.
	InvokeCount int
	// Last is the last invocation's result, for the record's
	// responseContext; nil when none applies (records that aged out).
	Last *dispatcher.Result
}

// Handler receives the outcome of each record.
type Handler interface {
	// Delivered is called, in record order, with records that are done.
	Delivered(ctx context.Context, recs []source.Record) error
	// Discarded routes records to the OnFailure destination (or drops them
	// when there is none). It returns only when the destination accepted
	// the record; records are not done before that.
	Discarded(ctx context.Context, d Discard) error
	// Retrying reports an error the batch is being retried after: an Invoke
	// error before the function ran, or a failed attempt.
	Retrying(err error)
}

// AttemptReporter is optionally implemented by a Handler that counts
// invocations: Attempted is called once per invocation of n records,
// failed when the Invoke failed, the function failed, or its partial
// batch response failed any record (AWS's FailedInvokeEventCount).
type AttemptReporter interface {
	Attempted(n int, failed bool)
}

// errFunctionFailed marks a failed attempt in Retrying reports.
var errFunctionFailed = errors.New("function call failed")

// unit is a (sub-)batch with its own attempt count: splitting resets it,
// as splitting does not consume the retry quota (STR-20).
type unit struct {
	recs     []source.Record
	attempts int
	last     *dispatcher.Result
}

// Process takes one batch of one lane through the retry policy until every
// record is delivered or discarded, and returns nil; or returns the
// context's error, leaving the rest of the batch unfinished (never done).
//
// The algorithm is the reference algorithm of spec 3.4:
//   - before every invocation, records older than MaxRecordAge (an arrival
//     order prefix) are discarded as RecordAgeExceeded;
//   - an Invoke error before the function ran (throttle, 5xx, network) is
//     retried after a backoff and is not an attempt;
//   - a function error, an invalid partial response, or a bad request
//     (ClassBadBatch) is a failed attempt of the whole batch: with Bisect
//     the batch is split at ceil(n/2) and the first half finishes before the
//     second; otherwise it is retried until MaxRetryAttempts is used up and
//     then discarded as RetryAttemptsExhausted;
//   - a valid partial response delivers the records before the lowest
//     failed one and retries the rest as a failed attempt (STR-24, STR-27).
func Process(ctx context.Context, p Policy, batch []source.Record, invoke InvokeFunc, h Handler) error {
	p.defaults()
	stack := []*unit{{recs: batch}}
	for len(stack) > 0 {
		u := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		halves, err := p.run(ctx, u, invoke, h)
		if err != nil {
			return err
		}
		// Push the second half first so the first is processed first.
		for i := len(halves) - 1; i >= 0; i-- {
			stack = append(stack, halves[i])
		}
	}
	return nil
}

// run processes one unit until it is done, discarded or split.
func (p *Policy) run(ctx context.Context, u *unit, invoke InvokeFunc, h Handler) ([]*unit, error) {
	bo := backoff.New(p.RetryDelay, p.MaxRetryDelay)
	ar, _ := h.(AttemptReporter)
	attempted := func(failed bool) {
		if ar != nil {
			ar.Attempted(len(u.recs), failed)
		}
	}
	for {
		if err := p.discardAged(ctx, u, h); err != nil || len(u.recs) == 0 {
			return nil, err
		}
		res, err := invoke(ctx, u.recs)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ie *dispatcher.InvokeError
			attempted(true)
			if !errors.As(err, &ie) || ie.Class != dispatcher.ClassBadBatch {
				// The batch did not reach the function: not an attempt (STR-15).
				h.Retrying(err)
				wait := bo.Next()
				if ie != nil && ie.RetryAfter > wait {
					wait = ie.RetryAfter
				}
				if ie != nil && (ie.Class == dispatcher.ClassRetryConfig || ie.Class == dispatcher.ClassMapping) {
					wait = p.MaxRetryDelay
				}
				if err := p.Sleep(ctx, wait); err != nil {
					return nil, err
				}
				continue
			}
			// This request can never succeed as sent: a failed attempt.
			res = dispatcher.Result{StatusCode: ie.StatusCode}
		}
		u.attempts++
		u.last = &res
		failed := err != nil || res.Failed()
		var bad *source.BatchError
		var perr error
		if !failed && p.PartialResponses {
			bad, perr = p.Failures(res.Payload, u.recs)
		}
		if err == nil { // a bad batch was reported above
			attempted(failed || perr != nil || bad.Len() > 0)
		}
		if !failed && p.PartialResponses {
			switch {
			case perr != nil:
				failed = true
			case bad.Len() > 0:
				k := bad.Indexes()[0]
				if err := h.Delivered(ctx, u.recs[:k]); err != nil {
					return nil, err
				}
				// Only the records from the lowest failure on are retried;
				// that is the bisection a partial response asks for (STR-27).
				u.recs = u.recs[k:]
				if exhausted := p.MaxRetryAttempts >= 0 && int64(u.attempts) > p.MaxRetryAttempts; exhausted {
					return nil, p.discard(ctx, u, ConditionRetryAttemptsExhausted, h)
				}
				h.Retrying(errFunctionFailed)
				if err := p.Sleep(ctx, bo.Next()); err != nil {
					return nil, err
				}
				continue
			}
		}
		if !failed {
			return nil, h.Delivered(ctx, u.recs)
		}
		if p.Bisect && len(u.recs) > 1 {
			mid := (len(u.recs) + 1) / 2
			return []*unit{{recs: u.recs[:mid]}, {recs: u.recs[mid:]}}, nil
		}
		if p.MaxRetryAttempts >= 0 && int64(u.attempts) > p.MaxRetryAttempts {
			return nil, p.discard(ctx, u, ConditionRetryAttemptsExhausted, h)
		}
		h.Retrying(errFunctionFailed)
		if err := p.Sleep(ctx, bo.Next()); err != nil {
			return nil, err
		}
	}
}

// discardAged discards the prefix of records older than MaxRecordAge.
// Records arrive in order within a lane, so the over-age ones are a prefix.
func (p *Policy) discardAged(ctx context.Context, u *unit, h Handler) error {
	if p.MaxRecordAge <= 0 {
		return nil
	}
	now := p.Now()
	n := 0
	for n < len(u.recs) && now.Sub(u.recs[n].Arrival) > p.MaxRecordAge {
		n++
	}
	if n == 0 {
		return nil
	}
	aged := &unit{recs: u.recs[:n], attempts: u.attempts}
	u.recs = u.recs[n:]
	return p.discard(ctx, aged, ConditionRecordAgeExceeded, h)
}

func (p *Policy) discard(ctx context.Context, u *unit, condition string, h Handler) error {
	d := Discard{Records: u.recs, Condition: condition, InvokeCount: u.attempts, Last: u.last}
	if condition == ConditionRecordAgeExceeded {
		// Recorded on AWS: no responseContext, and an approximateInvokeCount
		// of 1 for records that aged out before any invocation.
		d.Last = nil
		d.InvokeCount = max(u.attempts, 1)
	}
	return h.Discarded(ctx, d)
}

func (p *Policy) defaults() {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	if p.Failures == nil {
		p.Failures = source.IDFailures
	}
	if p.RetryDelay <= 0 {
		p.RetryDelay = 100 * time.Millisecond
	}
	if p.MaxRetryDelay < p.RetryDelay {
		p.MaxRetryDelay = max(p.RetryDelay, 30*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
