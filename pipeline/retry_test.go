package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/esmd/esmd/source"
)

// script answers invocations from a function of the batch's record IDs.
type script func(ids []string, call int) (dispatcher.Result, error)

type recorder struct {
	delivered []string
	discards  []Discard
	retrying  []error
	calls     [][]string
}

func (r *recorder) Delivered(_ context.Context, recs []source.Record) error {
	for _, x := range recs {
		r.delivered = append(r.delivered, x.ID)
	}
	return nil
}
func (r *recorder) Discarded(_ context.Context, d Discard) error {
	r.discards = append(r.discards, d)
	return nil
}
func (r *recorder) Retrying(err error) { r.retrying = append(r.retrying, err) }

func recs(n int, arrival time.Time) []source.Record {
	out := make([]source.Record, n)
	for i := range out {
		id := fmt.Sprintf("%03d", i+1)
		out[i] = source.Record{Lane: "shardId-000", ID: id, Seq: id, Arrival: arrival}
	}
	return out
}

func ids(rs []source.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func runPolicy(t *testing.T, p Policy, batch []source.Record, s script) *recorder {
	t.Helper()
	r := &recorder{}
	var slept time.Duration
	p.Sleep = func(_ context.Context, d time.Duration) error { slept += d; return nil }
	if p.Now == nil {
		p.Now = func() time.Time { return time.Unix(1000, 0) }
	}
	call := 0
	err := Process(context.Background(), p, batch, func(_ context.Context, rs []source.Record) (dispatcher.Result, error) {
		call++
		r.calls = append(r.calls, ids(rs))
		if call > 10000 {
			t.Fatal("runaway retry loop")
		}
		return s(ids(rs), call)
	}, r)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	ok       = dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`null`)}
	fnErr    = dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled", Payload: []byte(`{"errorMessage":"boom"}`)}
	throttle = &dispatcher.InvokeError{Type: "TooManyRequestsException", StatusCode: 429, Class: dispatcher.ClassRetry, RetryAfter: time.Second}
)

func partial(ids ...string) dispatcher.Result {
	var items []string
	for _, id := range ids {
		items = append(items, fmt.Sprintf(`{"itemIdentifier":%q}`, id))
	}
	return dispatcher.Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`{"batchItemFailures":[` + strings.Join(items, ",") + `]}`)}
}

func TestSuccessDeliversInOrder(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: -1}, recs(3, time.Unix(999, 0)), func([]string, int) (dispatcher.Result, error) { return ok, nil })
	if strings.Join(r.delivered, ",") != "001,002,003" || len(r.discards) != 0 || len(r.calls) != 1 {
		t.Fatalf("%+v", r)
	}
}

// Recorded: MaximumRetryAttempts 1 and a failing function give one
// OnFailure record with approximateInvokeCount 2 and functionError Unhandled.
func TestRetryAttemptsExhausted(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: 1}, recs(3, time.Unix(999, 0)), func([]string, int) (dispatcher.Result, error) { return fnErr, nil })
	if len(r.calls) != 2 || len(r.discards) != 1 || len(r.delivered) != 0 {
		t.Fatalf("calls %d discards %d delivered %v", len(r.calls), len(r.discards), r.delivered)
	}
	d := r.discards[0]
	if d.Condition != "RetryAttemptsExhausted" || d.InvokeCount != 2 || d.Last == nil || d.Last.FunctionError != "Unhandled" || len(d.Records) != 3 {
		t.Errorf("discard %+v", d)
	}
}

func TestZeroRetries(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: 0}, recs(2, time.Unix(999, 0)), func([]string, int) (dispatcher.Result, error) { return fnErr, nil })
	if len(r.calls) != 1 || r.discards[0].InvokeCount != 1 {
		t.Fatalf("calls %d %+v", len(r.calls), r.discards)
	}
}

// Recorded (test_kinesis_report_batch_item_failures): BatchSize 3,
// MaximumRetryAttempts 3, the last record of a batch reported failed every
// time: the OnFailure record covers that record only, approximateInvokeCount
// 4, statusCode 200 and no functionError.
func TestPartialResponseRecorded(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: 3, PartialResponses: true}, recs(3, time.Unix(999, 0)),
		func(ids []string, _ int) (dispatcher.Result, error) { return partial("003"), nil })
	if strings.Join(r.delivered, ",") != "001,002" || len(r.discards) != 1 {
		t.Fatalf("delivered %v discards %+v", r.delivered, r.discards)
	}
	d := r.discards[0]
	if d.InvokeCount != 4 || len(d.Records) != 1 || d.Records[0].ID != "003" || d.Last.StatusCode != 200 || d.Last.FunctionError != "" {
		t.Errorf("discard %+v", d)
	}
	// Retries resend only the records from the lowest failure on.
	for _, c := range r.calls[1:] {
		if strings.Join(c, ",") != "003" {
			t.Errorf("retry sent %v", c)
		}
	}
}

func TestPartialResponseLowestFailureWins(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: -1, PartialResponses: true}, recs(5, time.Unix(999, 0)),
		func(ids []string, call int) (dispatcher.Result, error) {
			if call == 1 {
				return partial("004", "002"), nil
			}
			return ok, nil
		})
	if strings.Join(r.calls[1], ",") != "002,003,004,005" || strings.Join(r.delivered, ",") != "001,002,003,004,005" {
		t.Fatalf("calls %v delivered %v", r.calls, r.delivered)
	}
}

// The recorded success and failure forms of a partial response.
func TestPartialResponseForms(t *testing.T) {
	success := []string{`""`, `[]`, `null`, `{}`, `{"batchItemFailures":[]}`, `{"batchItemFailures":null}`, ``}
	failure := []string{`{"batchItemFailures":[{}]}`, `{"batchItemFailures":[{"itemIdentifier":""}]}`,
		`{"batchItemFailures":[{"itemIdentifier":null}]}`, `{"batchItemFailures":[{"foo":"notvalid"}]}`,
		`{"batchItemFailures":[{"foo":null}]}`, `{"batchItemFailures":[{"itemIdentifier":"999"}]}`}
	for _, body := range success {
		r := runPolicy(t, Policy{MaxRetryAttempts: 0, PartialResponses: true}, recs(2, time.Unix(999, 0)),
			func([]string, int) (dispatcher.Result, error) {
				return dispatcher.Result{StatusCode: 200, Payload: []byte(body)}, nil
			})
		if len(r.delivered) != 2 || len(r.discards) != 0 {
			t.Errorf("%s: delivered %v discards %d", body, r.delivered, len(r.discards))
		}
	}
	for _, body := range failure {
		r := runPolicy(t, Policy{MaxRetryAttempts: 0, PartialResponses: true}, recs(2, time.Unix(999, 0)),
			func([]string, int) (dispatcher.Result, error) {
				return dispatcher.Result{StatusCode: 200, Payload: []byte(body)}, nil
			})
		if len(r.delivered) != 0 || len(r.discards) != 1 || len(r.discards[0].Records) != 2 {
			t.Errorf("%s: delivered %v discards %+v", body, r.delivered, r.discards)
		}
	}
	// Without ReportBatchItemFailures a partial response is ignored (STR-22).
	r := runPolicy(t, Policy{MaxRetryAttempts: 0}, recs(2, time.Unix(999, 0)),
		func([]string, int) (dispatcher.Result, error) { return partial("001"), nil })
	if len(r.delivered) != 2 {
		t.Errorf("partial response honoured without ReportBatchItemFailures: %v", r.delivered)
	}
}

func TestErrorsBeforeTheFunctionAreNotAttempts(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: 0}, recs(1, time.Unix(999, 0)), func(_ []string, call int) (dispatcher.Result, error) {
		if call <= 5 {
			return dispatcher.Result{}, throttle
		}
		return ok, nil
	})
	if len(r.delivered) != 1 || len(r.discards) != 0 || len(r.retrying) != 5 {
		t.Fatalf("delivered %v discards %v retrying %d", r.delivered, r.discards, len(r.retrying))
	}
}

func TestBisectIsolatesTheBadRecord(t *testing.T) {
	r := runPolicy(t, Policy{MaxRetryAttempts: 0, Bisect: true}, recs(8, time.Unix(999, 0)), func(ids []string, _ int) (dispatcher.Result, error) {
		for _, id := range ids {
			if id == "006" {
				return fnErr, nil
			}
		}
		return ok, nil
	})
	if strings.Join(r.delivered, ",") != "001,002,003,004,005,007,008" {
		t.Errorf("delivered %v", r.delivered)
	}
	if len(r.discards) != 1 || r.discards[0].Records[0].ID != "006" || r.discards[0].InvokeCount != 1 {
		t.Errorf("discards %+v", r.discards)
	}
	// ceil(n/2) halves, first half first: 8 -> [1-4 ok][5-8 fail] -> [5,6 fail] -> [5 ok][6 fail] -> [7,8 ok]
	want := []string{"001,002,003,004,005,006,007,008", "001,002,003,004", "005,006,007,008", "005,006", "005", "006", "007,008"}
	var got []string
	for _, c := range r.calls {
		got = append(got, strings.Join(c, ","))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("calls\n%v\nwant\n%v", got, want)
	}
}

func TestBadRequestCountsAsAttemptAndBisects(t *testing.T) {
	tooLarge := &dispatcher.InvokeError{Type: "RequestTooLargeException", StatusCode: 413, Class: dispatcher.ClassBadBatch}
	r := runPolicy(t, Policy{MaxRetryAttempts: 0, Bisect: true}, recs(2, time.Unix(999, 0)), func(ids []string, _ int) (dispatcher.Result, error) {
		if len(ids) > 1 {
			return dispatcher.Result{}, tooLarge
		}
		return ok, nil
	})
	if len(r.delivered) != 2 || len(r.calls) != 3 {
		t.Errorf("delivered %v calls %v", r.delivered, r.calls)
	}
}

func TestRecordAge(t *testing.T) {
	now := time.Unix(10_000, 0)
	// Expired before ingestion: discarded without invocation, count 1, no responseContext.
	old := recs(3, now.Add(-2*time.Minute))
	r := runPolicy(t, Policy{MaxRetryAttempts: -1, MaxRecordAge: time.Minute, Now: func() time.Time { return now }}, old,
		func([]string, int) (dispatcher.Result, error) { return ok, nil })
	if len(r.calls) != 0 || len(r.discards) != 1 || r.discards[0].Condition != "RecordAgeExceeded" || r.discards[0].InvokeCount != 1 || r.discards[0].Last != nil {
		t.Fatalf("calls %v discards %+v", r.calls, r.discards)
	}
	// Expire while retrying: the count is the invocations made.
	clock := now
	batch := recs(2, now.Add(-30*time.Second))
	r = runPolicy(t, Policy{MaxRetryAttempts: -1, MaxRecordAge: time.Minute, Now: func() time.Time { return clock }}, batch,
		func(_ []string, call int) (dispatcher.Result, error) {
			clock = clock.Add(5 * time.Second)
			return fnErr, nil
		})
	d := r.discards[0]
	if d.Condition != "RecordAgeExceeded" || d.InvokeCount != len(r.calls) || d.Last != nil || len(d.Records) != 2 {
		t.Fatalf("discard %+v after %d calls", d, len(r.calls))
	}
	// Only the over-age prefix is discarded; younger records are invoked.
	mixed := append(recs(1, now.Add(-2*time.Minute)), recs(2, now)...)
	mixed[1].ID, mixed[2].ID = "a", "b"
	r = runPolicy(t, Policy{MaxRetryAttempts: -1, MaxRecordAge: time.Minute, Now: func() time.Time { return now }}, mixed,
		func([]string, int) (dispatcher.Result, error) { return ok, nil })
	if len(r.discards) != 1 || len(r.discards[0].Records) != 1 || strings.Join(r.delivered, ",") != "a,b" {
		t.Fatalf("discards %+v delivered %v", r.discards, r.delivered)
	}
}

func TestCancelLeavesRecordsUnfinished(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h := &recorder{}
	err := Process(ctx, Policy{MaxRetryAttempts: -1, Sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }},
		recs(2, time.Now()), func(context.Context, []source.Record) (dispatcher.Result, error) { return fnErr, nil }, h)
	if !errors.Is(err, context.Canceled) || len(h.delivered) != 0 || len(h.discards) != 0 {
		t.Fatalf("err %v delivered %v discards %v", err, h.delivered, h.discards)
	}
}

func TestKafkaPartialResponse(t *testing.T) {
	batch := []source.Record{
		{Group: "orders-0", Seq: "10", ID: "10"}, {Group: "orders-0", Seq: "11", ID: "11"}, {Group: "orders-0", Seq: "12", ID: "12"},
	}
	p := Policy{MaxRetryAttempts: 0, PartialResponses: true, Failures: kafka.Failures}
	r := runPolicy(t, p, batch, func([]string, int) (dispatcher.Result, error) {
		return dispatcher.Result{StatusCode: 200, Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":11}}]}`)}, nil
	})
	if strings.Join(r.delivered, ",") != "10" || len(r.discards) != 1 || len(r.discards[0].Records) != 2 {
		t.Fatalf("delivered %v discards %+v", r.delivered, r.discards)
	}
	// The SQS/Kinesis shape, or an offset of another partition, fails the whole batch.
	for _, body := range []string{`{"batchItemFailures":[{"itemIdentifier":"11"}]}`,
		`{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-1","offset":11}}]}`} {
		r := runPolicy(t, p, batch, func([]string, int) (dispatcher.Result, error) {
			return dispatcher.Result{StatusCode: 200, Payload: []byte(body)}, nil
		})
		if len(r.delivered) != 0 || len(r.discards[0].Records) != 3 {
			t.Errorf("%s: delivered %v discards %+v", body, r.delivered, r.discards)
		}
	}
}
