package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

// lagPoller adds the optional lane figures to a memsource poller.
type lagPoller struct {
	*memsource.Poller
}

func (lagPoller) Lag() map[string]time.Duration {
	return map[string]time.Duration{"shardId-000000000010": 1500 * time.Millisecond, "shardId-000000000002": 0}
}

func (lagPoller) OffsetLag() map[string]int64 { return map[string]int64{"t-10": 3, "t-2": 7} }

func (lagPoller) Leased() []string { return []string{"shardId-000000000010", "shardId-000000000002"} }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

// value returns the sample of a metric line that starts with prefix.
func value(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return ""
}

// The counters follow AWS's definitions (spec 9.2): polled counts every
// record read, filtered-out those the criteria removed, invoked every
// record sent (retries count again), failed-invoke the records of failed
// invocations, OnFailure-delivered and dropped the discarded ones.
func TestMetricsCountEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		inv := &fakeInvoker{fn: func(bodies []memsource.Body) (dispatcher.Result, error) {
			for _, b := range bodies {
				if b.Body == "keep-bad" {
					return dispatcher.Result{StatusCode: 200, FunctionError: "Unhandled", Payload: []byte(`{}`)}, nil
				}
			}
			return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
		}}
		dest := &fakeSender{}
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(1))
			c.MaximumRetryAttempts = ptr(int64(2))
			c.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptr(`{"body":[{"prefix":"keep"}]}`)}}}
			c.DestinationConfig = &esm.DestinationConfig{OnFailure: &esm.Destination{Destination: ptr("arn:aws:sqs:us-east-1:000000000000:dlq")}}
		})
		metrics := NewMetrics()
		metrics.Worker = "w1"
		r := &Runner{
			Source:      descriptorFor(esm.SourceKinesis),
			Open:        func(context.Context, *esm.Mapping) (source.Poller, error) { return lagPoller{log.NewPoller(7)}, nil },
			Invoker:     inv,
			Destination: func(string, *esm.Mapping) (destination.Sender, error) { return dest, nil },
			RetryDelay:  time.Millisecond, MaxRetryDelay: time.Millisecond,
			Metrics: metrics,
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()

		for _, b := range []string{"keep-1", "drop-1", "keep-bad", "drop-2", "keep-2"} {
			log.Produce("k", b)
		}
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the end", func() bool { return log.Checkpoint("lane-0") == 4 })
		text := scrape(t, metrics)
		labels := fmt.Sprintf(`{uuid=%q,function=%q,source=%q}`, m.UUID, m.FunctionArn, m.Source)
		want := map[string]string{
			"esmd_polled_events_total":                           "5",
			"esmd_filtered_out_events_total":                     "2",
			"esmd_invoked_events_total":                          "5", // keep-1, keep-2, keep-bad 3 times
			"esmd_failed_invoke_events_total":                    "3",
			"esmd_on_failure_destination_delivered_events_total": "1",
			"esmd_dropped_events_total":                          "0",
			"esmd_deleted_events_total":                          "0", // streams delete nothing
		}
		for name, v := range want {
			if got := value(text, name+labels); got != v {
				t.Errorf("%s = %q, want %s\n%s", name, got, v, text)
			}
		}
		// Lane figures while running, lanes in number order.
		age := `esmd_iterator_age_milliseconds` + strings.TrimSuffix(labels, "}")
		if !strings.Contains(text, age+`,lane="shardId-000000000002"} 0`+"\n"+age+`,lane="shardId-000000000010"} 1500`) {
			t.Errorf("iterator age lines missing or out of order:\n%s", text)
		}
		lag := `esmd_offset_lag` + strings.TrimSuffix(labels, "}")
		if !strings.Contains(text, lag+`,lane="t-2"} 7`+"\n"+lag+`,lane="t-10"} 3`) {
			t.Errorf("offset lag lines missing or out of order:\n%s", text)
		}
		leased := `esmd_lane_leased` + strings.TrimSuffix(labels, "}")
		if !strings.Contains(text, leased+`,lane="shardId-000000000002",worker="w1"} 1`+"\n"+leased+`,lane="shardId-000000000010",worker="w1"} 1`) {
			t.Errorf("leased lane lines missing or out of order:\n%s", text)
		}

		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Stopped: counters stay, lane figures go (AWS emits none for a
		// disabled mapping).
		text = scrape(t, metrics)
		if value(text, "esmd_polled_events_total"+labels) != "5" || strings.Contains(text, "esmd_iterator_age_milliseconds{") || strings.Contains(text, "esmd_lane_leased{") {
			t.Errorf("after stop:\n%s", text)
		}
	})
}

// Queue sources count deleted events: delivered ones, and filtered-out
// ones, which are deleted too (spec 8.5).
func TestMetricsCountDeletedForQueues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		m := mapping(func(c *esm.Config) {
			c.EventSourceArn = ptr("arn:aws:sqs:us-east-1:000000000000:q")
			c.ParallelizationFactor, c.MaximumRetryAttempts, c.MaximumRecordAgeInSeconds = nil, nil, nil
			c.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptr(`{"body":{"k":["x"]}}`)}}}
		})
		m.Source = esm.SourceSQS
		metrics := NewMetrics()
		var mu sync.Mutex
		calls := 0
		inv := dispatcher.InvokerFunc(func(context.Context, string, []byte) (dispatcher.Result, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return dispatcher.Result{StatusCode: 200, Payload: []byte("null")}, nil
		})
		r := &Runner{Source: descriptorFor(esm.SourceSQS), Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil }, Invoker: inv, Metrics: metrics}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
		log.ProduceData("k", func(string, string, time.Time) []byte { return []byte(`{"body":"{\"k\":\"x\"}"}`) })
		log.ProduceData("k", func(string, string, time.Time) []byte { return []byte(`{"body":"{\"k\":\"y\"}"}`) })
		testenv.EventuallyTrue(t, 10*time.Second, "both records done", func() bool { return log.Checkpoint("lane-0") == 1 })
		labels := fmt.Sprintf(`{uuid=%q,function=%q,source=%q}`, m.UUID, m.FunctionArn, m.Source)
		text := scrape(t, metrics)
		if value(text, "esmd_deleted_events_total"+labels) != "2" || value(text, "esmd_filtered_out_events_total"+labels) != "1" ||
			value(text, "esmd_invoked_events_total"+labels) != "1" {
			t.Errorf("metrics:\n%s", text)
		}
		cancel()
		<-done
	})
}

// disableReporter records Disable calls.
type disableReporter struct {
	mu       sync.Mutex
	results  []string
	disabled string
	cancel   context.CancelFunc
}

func (r *disableReporter) ProcessingResult(s string) {
	r.mu.Lock()
	r.results = append(r.results, s)
	r.mu.Unlock()
}

func (r *disableReporter) Disable(reason string) {
	r.mu.Lock()
	r.disabled = reason
	r.mu.Unlock()
	r.cancel() // the engine stops the pipeline of a disabled mapping
}

// failingPoller fails its first Poll with err.
type failingPoller struct {
	err error
}

func (p *failingPoller) Poll(context.Context) ([]source.Record, error)     { return nil, p.err }
func (p *failingPoller) Ack(context.Context, []source.Record, error) error { return nil }
func (p *failingPoller) Close() error                                      { return nil }

// A source that refuses the mapping for good (wrong credentials) disables
// it with the reason, whether Open or a later Poll finds out; any other
// error is returned for the engine to retry.
func TestDisableError(t *testing.T) {
	authn := &esm.DisableError{Reason: "EVENT_SOURCE_AUTHN_ERROR", Err: errors.New("ACCESS_REFUSED - Login was refused")}
	cases := []struct {
		name      string
		open      error
		poll      error
		disabled  string
		returnErr bool
	}{
		{"open refuses", fmt.Errorf("connect: %w", authn), nil, "EVENT_SOURCE_AUTHN_ERROR", false},
		{"poll refuses", nil, fmt.Errorf("consume: %w", authn), "EVENT_SOURCE_AUTHN_ERROR", false},
		{"open fails", io.ErrUnexpectedEOF, nil, "", true},
		{"poll fails", nil, io.ErrUnexpectedEOF, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rep := &disableReporter{cancel: cancel}
			r := &Runner{
				Source: descriptorFor(esm.SourceKinesis),
				Open: func(context.Context, *esm.Mapping) (source.Poller, error) {
					if tc.open != nil {
						return nil, tc.open
					}
					return &failingPoller{err: tc.poll}, nil
				},
				Invoker: &fakeInvoker{},
			}
			err := r.Run(ctx, mapping(nil), rep)
			if (err != nil) != tc.returnErr {
				t.Fatalf("Run returned %v", err)
			}
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if rep.disabled != tc.disabled {
				t.Errorf("disabled with %q, want %q", rep.disabled, tc.disabled)
			}
			if tc.disabled != "" && (len(rep.results) == 0 || rep.results[len(rep.results)-1] != "PROBLEM: ACCESS_REFUSED - Login was refused") {
				t.Errorf("processing results %q", rep.results)
			}
		})
	}
}

// A partial batch response that fails an item counts the invocation's
// events as failed (spec 9.2); the retry of the failed item counts again.
func TestMetricsCountPartialFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := memsource.NewLog(1)
		var mu sync.Mutex
		failedOnce := false
		inv := &fakeInvoker{fn: func(bodies []memsource.Body) (dispatcher.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			if !failedOnce && len(bodies) == 3 {
				failedOnce = true
				// The third record (sequence number 2) failed.
				return dispatcher.Result{StatusCode: 200, Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"2"}]}`)}, nil
			}
			return dispatcher.Result{StatusCode: 200, Payload: []byte(`{"batchItemFailures":[]}`)}, nil
		}}
		m := mapping(func(c *esm.Config) {
			c.BatchSize = ptr(int64(3))
			c.MaximumBatchingWindowInSeconds = ptr(int64(1))
			c.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
		})
		metrics := NewMetrics()
		r := &Runner{
			Source:     descriptorFor(esm.SourceKinesis),
			Open:       func(context.Context, *esm.Mapping) (source.Poller, error) { return log.NewPoller(7), nil },
			Invoker:    inv,
			RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond,
			Metrics: metrics,
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, m, &fakeReporter{}) }()
		produce(log, 3, 1, "r")
		testenv.EventuallyTrue(t, 10*time.Second, "checkpoint at the end", func() bool { return log.Checkpoint("lane-0") == 2 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		labels := fmt.Sprintf(`{uuid=%q,function=%q,source=%q}`, m.UUID, m.FunctionArn, m.Source)
		text := scrape(t, metrics)
		// 3 records with one failed item, then the failed one alone.
		if value(text, "esmd_invoked_events_total"+labels) != "4" || value(text, "esmd_failed_invoke_events_total"+labels) != "3" {
			t.Errorf("metrics:\n%s", text)
		}
	})
}
