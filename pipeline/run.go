package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/esmd/esmd/batcher"
	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Runner runs the data plane of mappings of one source kind: it implements
// esm.Runner. Open makes the source's poller; everything after it
// (filtering, batching, invoking, retries, OnFailure, acknowledgement) is
// the same for every source.
type Runner struct {
	// Open starts a poller for a mapping.
	Open func(ctx context.Context, m *esm.Mapping) (Poller, error)
	// Invoker calls the function.
	Invoker dispatcher.Invoker
	// Destination returns the sender for an OnFailure destination; nil
	// when esmd was started without destination clients (records that would
	// go to a destination are then dropped with a log line).
	Destination func(dest string, m *esm.Mapping) (destination.Sender, error)
	// Log receives the pipeline's logs (default: discard).
	Log *slog.Logger
	// MaxBuffered is how many records a mapping buffers before polling
	// pauses (default 4 batches' worth, at least 10,000, so that sources
	// with many lanes, such as Kafka partitions, still fill whole batches).
	MaxBuffered int
	// MaxInFlight caps concurrent invocations of a mapping (default 1,000;
	// SQS ScalingConfig.MaximumConcurrency lowers it).
	MaxInFlight int
	// RetryDelay and MaxRetryDelay bound the backoff between attempts
	// (defaults 100 ms and 30 s).
	RetryDelay, MaxRetryDelay time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics, when set, counts the mapping's events and shows its
	// pollers' lane figures.
	Metrics *Metrics
}

// Kind returns the payload kind of a mapping's events.
func Kind(m *esm.Mapping) payload.Kind {
	switch m.Source {
	case esm.SourceSQS:
		return payload.KindSQS
	case esm.SourceKinesis:
		return payload.KindKinesis
	case esm.SourceDynamoDB:
		return payload.KindDynamoDB
	case esm.SourceMSK:
		return payload.KindMSK
	case esm.SourceKafka:
		return payload.KindSelfManagedKafka
	case esm.SourceDocumentDB:
		return payload.KindDocumentDB
	}
	return payload.KindRabbitMQ
}

// ordered reports whether failures go through the retry policy (streams,
// Kafka, DocumentDB) rather than back to a broker (SQS, MQ).
func ordered(k payload.Kind) bool {
	switch k {
	case payload.KindSQS, payload.KindRabbitMQ, payload.KindActiveMQ:
		return false
	}
	return true
}

// Envelope returns the envelope of a mapping's events.
func Envelope(m *esm.Mapping) payload.Envelope {
	env := payload.Envelope{Kind: Kind(m)}
	if m.Config.EventSourceArn != nil {
		env.EventSourceARN = *m.Config.EventSourceArn
	}
	if s := m.Config.SelfManagedEventSource; s != nil {
		env.BootstrapServers = strings.Join(s.Endpoints["KAFKA_BOOTSTRAP_SERVERS"], ",")
	}
	return env
}

// BatchPolicy returns the batching policy of a mapping: AWS's defaults for
// its kind with the mapping's BatchSize, window, ParallelizationFactor and
// tumbling window.
func BatchPolicy(m *esm.Mapping) batcher.Policy {
	p := batcher.DefaultPolicy(Kind(m))
	c := &m.Config
	if c.BatchSize != nil {
		p.BatchSize = int(*c.BatchSize)
	}
	if c.MaximumBatchingWindowInSeconds != nil {
		p.Window = time.Duration(*c.MaximumBatchingWindowInSeconds) * time.Second
	}
	if c.ParallelizationFactor != nil {
		p.ParallelizationFactor = int(*c.ParallelizationFactor)
	}
	if c.TumblingWindowInSeconds != nil {
		p.TumblingWindow = time.Duration(*c.TumblingWindowInSeconds) * time.Second
	}
	return p
}

// RetryPolicy returns the error handling of a mapping.
func (r *Runner) RetryPolicy(m *esm.Mapping) Policy {
	c := &m.Config
	p := Policy{MaxRetryAttempts: -1, RetryDelay: r.RetryDelay, MaxRetryDelay: r.MaxRetryDelay, Now: r.Now}
	if c.MaximumRetryAttempts != nil {
		p.MaxRetryAttempts = *c.MaximumRetryAttempts
	}
	if c.MaximumRecordAgeInSeconds != nil && *c.MaximumRecordAgeInSeconds > 0 {
		p.MaxRecordAge = time.Duration(*c.MaximumRecordAgeInSeconds) * time.Second
	}
	p.Bisect = c.BisectBatchOnFunctionError != nil && *c.BisectBatchOnFunctionError
	for _, t := range c.FunctionResponseTypes {
		p.PartialResponses = p.PartialResponses || t == "ReportBatchItemFailures"
	}
	if k := Kind(m); k == payload.KindMSK || k == payload.KindSelfManagedKafka {
		p.Failures = KafkaFailures
		// KAF-10: with infinite retries and an OnFailure destination,
		// Lambda caps Kafka retries at 10.
		if d := c.DestinationConfig; p.MaxRetryAttempts < 0 && d != nil && d.OnFailure != nil &&
			d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" {
			p.MaxRetryAttempts = 10
		}
	}
	return p
}

// run is the state of one Run.
type run struct {
	r       *Runner
	m       *esm.Mapping
	rep     esm.Reporter
	log     *slog.Logger
	kind    payload.Kind
	fsrc    filter.Source
	match   *filter.Matcher
	batches *batcher.Batcher
	poller  Poller
	policy  Policy
	sender  destination.Sender
	sem     chan struct{}
	now     func() time.Time
	mm      *mappingMetrics // nil without Runner.Metrics
	// filtering is false without FilterCriteria: every record is kept.
	filtering bool
	// reuse says the Invoker reads a payload only until Invoke returns
	// (ReleasesPayload): events are then built in buffers from bufs, and
	// a batch does not allocate its event (about 180 KB for 100 records
	// of 1 KB, most of the garbage a queue mapping makes otherwise).
	reuse bool
	bufs  sync.Pool // *[]byte
}

// payloadReleaser is an Invoker that reads a payload only until Invoke
// returns, as dispatcher.LambdaInvoker does on its direct HTTP path.
type payloadReleaser interface {
	ReleasesPayload() bool
}

// invoke calls the function with the event build appends to an empty
// buffer of size bytes' capacity.
func (x *run) invoke(ctx context.Context, size int, build func([]byte) []byte) (dispatcher.Result, error) {
	if !x.reuse {
		return x.r.Invoker.Invoke(ctx, x.m.FunctionArn, build(make([]byte, 0, size)))
	}
	p, _ := x.bufs.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	if cap(*p) < size {
		*p = make([]byte, 0, size)
	}
	ev := build((*p)[:0])
	res, err := x.r.Invoker.Invoke(ctx, x.m.FunctionArn, ev)
	*p = ev[:0]
	x.bufs.Put(p)
	return res, err
}

// Run implements esm.Runner: it polls, filters, batches and invokes until
// ctx is cancelled, then stops polling, waits for the batches in flight
// (their records are acknowledged only if they finished) and closes the
// poller.
func (r *Runner) Run(ctx context.Context, m *esm.Mapping, rep esm.Reporter) error {
	x := &run{r: r, m: m, rep: rep, kind: Kind(m), fsrc: filter.Source(m.Source.FilterSource()), now: r.Now}
	if x.now == nil {
		x.now = time.Now
	}
	x.log = r.Log
	if x.log == nil {
		x.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	x.log = x.log.With("uuid", m.UUID)
	var pats []string
	if fc := m.Config.FilterCriteria; fc != nil {
		for _, f := range fc.Filters {
			pats = append(pats, *f.Pattern)
		}
	}
	x.filtering = len(pats) > 0
	if rp, ok := r.Invoker.(payloadReleaser); ok {
		x.reuse = rp.ReleasesPayload()
	}
	var err error
	if x.match, err = filter.Compile(pats, filter.WithSource(x.fsrc), filter.WithMaxFilters(0)); err != nil {
		return fmt.Errorf("filter criteria: %w", err)
	}
	policy := BatchPolicy(m)
	if x.batches, err = batcher.New(policy, Envelope(m)); err != nil {
		return err
	}
	x.policy = r.RetryPolicy(m)
	if d := m.Config.DestinationConfig; d != nil && d.OnFailure != nil && d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" && r.Destination != nil {
		if x.sender, err = r.Destination(*d.OnFailure.Destination, m); err != nil {
			return fmt.Errorf("OnFailure destination: %w", err)
		}
	}
	inflight := r.MaxInFlight
	if inflight <= 0 {
		inflight = 1000
	}
	if sc := m.Config.ScalingConfig; sc != nil && sc.MaximumConcurrency != nil {
		inflight = int(*sc.MaximumConcurrency)
	}
	x.sem = make(chan struct{}, inflight)
	maxBuf := r.MaxBuffered
	if maxBuf <= 0 {
		maxBuf = max(4*policy.BatchSize, 10000)
	}
	if x.poller, err = r.Open(ctx, m); err != nil {
		return x.disableOr(ctx, fmt.Errorf("open source: %w", err))
	}
	x.mm = r.Metrics.mapping(m)
	x.mm.attach(x.poller)
	defer x.mm.detach(x.poller)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	space := make(chan struct{}, 1) // signalled when a batch completes
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := x.pollLoop(ctx, maxBuf, space); err != nil && ctx.Err() == nil {
			errc <- err
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := x.dispatchLoop(ctx, &wg, space); err != nil && ctx.Err() == nil {
			errc <- err
			cancel()
		}
	}()
	<-ctx.Done()
	x.batches.Close()
	wg.Wait()
	cerr := x.poller.Close()
	if cerr != nil {
		x.log.Warn("closing the source", "err", cerr)
	}
	select {
	case err := <-errc:
		return x.disableOr(ctx, err)
	default:
	}
	return nil
}

// disableOr returns err, unless it is an *esm.DisableError: then the
// mapping is disabled as Lambda does (its reason in StateTransitionReason,
// the error in LastProcessingResult) and disableOr waits for the engine to
// stop the pipeline, so that it is not restarted.
func (x *run) disableOr(ctx context.Context, err error) error {
	var de *esm.DisableError
	if !errors.As(err, &de) {
		return err
	}
	x.log.Error("source refused the mapping; disabling it", "reason", de.Reason, "err", err)
	x.rep.ProcessingResult("PROBLEM: " + de.Error())
	x.rep.Disable(de.Reason)
	<-ctx.Done()
	return nil
}

func (x *run) pollLoop(ctx context.Context, maxBuf int, space <-chan struct{}) error {
	for {
		for x.batches.Len() >= maxBuf {
			select {
			case <-ctx.Done():
				return nil
			case <-space:
			}
		}
		recs, err := x.poller.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("poll: %w", err)
		}
		x.mm.add(cPolled, len(recs))
		kept, dropped := recs, []source.Record(nil)
		if x.filtering {
			kept, dropped = x.filter(recs)
		}
		// Filtered-out records are consumed, as AWS does: deleted, acked,
		// checkpointed past (spec 8.5).
		if len(dropped) > 0 {
			x.mm.add(cFilteredOut, len(dropped))
			if err := x.poller.Done(ctx, dropped); err != nil {
				return fmt.Errorf("acknowledge filtered records: %w", err)
			}
			if !ordered(x.kind) {
				x.mm.add(cDeleted, len(dropped))
			}
		}
		if len(kept) > 0 {
			if err := x.batches.AddAll(kept); err != nil {
				return nil // closed
			}
		}
	}
}

// filter splits records into those the FilterCriteria keep and those they
// drop; a record the filter cannot read is dropped.
func (x *run) filter(recs []source.Record) (kept, dropped []source.Record) {
	kept = make([]source.Record, 0, len(recs))
	for _, rec := range recs {
		ok, err := x.match.Match(x.fsrc, rec.Data)
		if err != nil {
			x.log.Warn("record the filter cannot read is dropped", "lane", rec.Lane, "id", rec.ID, "err", err)
		}
		if ok {
			kept = append(kept, rec)
		} else {
			dropped = append(dropped, rec)
		}
	}
	return kept, dropped
}

func (x *run) dispatchLoop(ctx context.Context, wg *sync.WaitGroup, space chan<- struct{}) error {
	for {
		bt, err := x.batches.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, batcher.ErrClosed) {
				return nil
			}
			return err
		}
		select {
		case x.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-x.sem }()
			state := x.handle(ctx, bt)
			if err := x.batches.Done(bt, state); err != nil && !errors.Is(err, batcher.ErrClosed) {
				x.log.Error("release batch", "err", err)
			}
			select {
			case space <- struct{}{}:
			default:
			}
		}()
	}
}

// handle takes one batch to its outcome and returns the tumbling-window
// state for the next invocation of its window (nil without windows).
func (x *run) handle(ctx context.Context, bt *batcher.Batch) []byte {
	if bt.Oversize {
		x.oversize(ctx, bt)
		return nil
	}
	if !ordered(x.kind) {
		x.handleQueue(ctx, bt)
		return nil
	}
	if bt.Window != nil && len(bt.Records) == 0 {
		x.windowEnd(ctx, bt)
		return nil
	}
	var state []byte
	invoke := func(ctx context.Context, recs []source.Record) (dispatcher.Result, error) {
		size, build := bt.Size, bt.AppendEvent
		if len(recs) != len(bt.Records) { // a bisected or partially retried part
			b := x.builder(bt, recs)
			size, build = b.Size(), b.AppendTo
		}
		res, err := x.invoke(ctx, size, build)
		if err != nil || res.Failed() || bt.Window == nil {
			return res, err
		}
		st, _, werr := dispatcher.ParseWindowResponse(res.Payload, nil)
		if errors.Is(werr, dispatcher.ErrMissingState) {
			// A window response without state is a failed invocation
			// (STR-32); it is reported like a function error.
			res.FunctionError = "Unhandled"
			return res, nil
		}
		state = st
		return res, nil
	}
	h := &streamHandler{x: x, bt: bt}
	if err := Process(ctx, x.policy, bt.Records, invoke, h); err != nil {
		return nil // cancelled: the records stay unfinished and are read again
	}
	if !h.failed {
		x.rep.ProcessingResult("OK")
	}
	return state
}

// windowEnd sends the invocation of a window without records: the final
// one, after the window's records were sent, or the one that ends a window
// whose state grew too big (STR-31). It is retried like a batch, with the
// mapping's MaximumRetryAttempts; there are no records to route to the
// OnFailure destination when it gives up.
func (x *run) windowEnd(ctx context.Context, bt *batcher.Batch) {
	delay := x.policy.RetryDelay
	if delay <= 0 {
		delay = 100 * time.Millisecond
	}
	maxDelay := x.policy.MaxRetryDelay
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	for attempt := 1; ; attempt++ {
		res, err := x.invoke(ctx, bt.Size, bt.AppendEvent)
		if err == nil && !res.Failed() {
			x.rep.ProcessingResult("OK")
			return
		}
		if ctx.Err() != nil {
			return
		}
		why := "Function call failed"
		if err != nil {
			why = err.Error()
		}
		x.rep.ProcessingResult("PROBLEM: " + why)
		if n := x.policy.MaxRetryAttempts; n >= 0 && int64(attempt) > n {
			x.log.Warn("window invocation without records failed; giving up", "lane", bt.Lane, "attempts", attempt, "err", why)
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, maxDelay)
	}
}

// event builds the invocation event of records of a batch (all of them, or
// a bisected or partially retried part).
func (x *run) event(bt *batcher.Batch, recs []source.Record) []byte {
	if len(recs) == len(bt.Records) {
		return bt.AppendEvent(make([]byte, 0, bt.Size))
	}
	return x.builder(bt, recs).Bytes()
}

// builder returns a builder holding records of a batch.
func (x *run) builder(bt *batcher.Batch, recs []source.Record) *payload.Builder {
	b := payload.NewBuilder(bt.Envelope())
	for i := range recs {
		b.Add(recs[i].Group, recs[i].Data)
	}
	return b
}

// streamHandler acknowledges the outcomes of an ordered batch.
type streamHandler struct {
	x      *run
	bt     *batcher.Batch
	failed bool
}

func (h *streamHandler) Delivered(ctx context.Context, recs []source.Record) error {
	if len(recs) == 0 {
		return nil
	}
	return h.x.poller.Done(ctx, recs)
}

func (h *streamHandler) Discarded(ctx context.Context, d Discard) error {
	h.failed = true
	if err := h.x.sendFailure(ctx, h.bt, d); err != nil {
		return err
	}
	return h.x.poller.Done(ctx, d.Records)
}

// Attempted counts an invocation (pipeline.AttemptReporter).
func (h *streamHandler) Attempted(n int, failed bool) {
	h.x.mm.add(cInvoked, n)
	if failed {
		h.x.mm.add(cFailedInvoke, n)
	}
}

func (h *streamHandler) Retrying(err error) {
	h.failed = true
	h.x.rep.ProcessingResult("PROBLEM: " + problem(err))
}

func problem(err error) string {
	if errors.Is(err, errFunctionFailed) {
		return "Function call failed"
	}
	return err.Error()
}

// sendFailure routes discarded records to the OnFailure destination,
// retrying until it accepts them (records are not done before that).
func (x *run) sendFailure(ctx context.Context, bt *batcher.Batch, d Discard) error {
	if x.sender == nil {
		x.log.Warn("records discarded without an OnFailure destination", "lane", bt.Lane, "condition", d.Condition, "records", len(d.Records))
		x.mm.add(cDropped, len(d.Records))
		return nil
	}
	rec := x.failureRecord(bt, d)
	delay := 100 * time.Millisecond
	for {
		err := x.sender.Send(ctx, rec)
		if err == nil {
			x.mm.add(cOnFailureDelivered, len(d.Records))
			return nil
		}
		x.log.Warn("OnFailure destination refused a record; retrying", "err", err)
		x.rep.ProcessingResult("PROBLEM: OnFailure destination: " + err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// failureRecord builds the OnFailure invocation record of discarded records.
func (x *run) failureRecord(bt *batcher.Batch, d Discard) *destination.Record {
	rec := &destination.Record{
		RequestID:              uuid.NewString(),
		FunctionARN:            x.m.FunctionArn,
		Condition:              destination.Condition(d.Condition),
		ApproximateInvokeCount: d.InvokeCount,
		Timestamp:              x.now(),
		Payload:                x.event(bt, d.Records),
		Lane:                   bt.Lane,
	}
	if d.Last != nil {
		rec.Response = &destination.ResponseContext{StatusCode: d.Last.StatusCode, ExecutedVersion: d.Last.ExecutedVersion, FunctionError: d.Last.FunctionError}
	}
	first, last := d.Records[0], d.Records[len(d.Records)-1]
	arn := ""
	if x.m.Config.EventSourceArn != nil {
		arn = *x.m.Config.EventSourceArn
	}
	switch x.kind {
	case payload.KindKinesis, payload.KindDynamoDB:
		info := &destination.StreamBatchInfo{ShardID: bt.Lane, StartSequenceNumber: first.Seq, EndSequenceNumber: last.Seq,
			ApproximateArrivalOfFirstRecord: first.Arrival, ApproximateArrivalOfLastRecord: last.Arrival,
			BatchSize: len(d.Records), StreamARN: arn}
		if x.kind == payload.KindKinesis {
			rec.Kinesis = info
		} else {
			rec.DynamoDB = info
		}
	case payload.KindMSK, payload.KindSelfManagedKafka:
		env := Envelope(x.m)
		info := &destination.KafkaBatchInfo{BatchSize: len(d.Records), EventSourceARN: env.EventSourceARN,
			BootstrapServers: env.BootstrapServers, PayloadSize: len(rec.Payload)}
		for _, r := range d.Records {
			off, _ := strconv.ParseInt(r.Seq, 10, 64)
			n := len(info.RecordsInfo)
			if n == 0 || info.RecordsInfo[n-1].Partition != r.Group {
				info.RecordsInfo = append(info.RecordsInfo, destination.KafkaPartitionInfo{Partition: r.Group,
					FirstRecordOffset: off, FirstRecordTimestamp: r.Arrival})
				n++
			}
			info.RecordsInfo[n-1].LastRecordOffset = off
			info.RecordsInfo[n-1].LastRecordTimestamp = r.Arrival
		}
		rec.Kafka = info
	}
	return rec
}

// oversize handles a record whose event alone passes the 6 MB limit: it is
// routed to the OnFailure destination where there is one and consumed, so
// its lane is never stuck (spec 2.3). Queue sources hand it back to the
// broker, whose redrive policy ends its life.
func (x *run) oversize(ctx context.Context, bt *batcher.Batch) {
	if len(bt.Records) == 0 {
		return
	}
	x.log.Warn("record larger than the invocation payload limit", "lane", bt.Lane, "id", bt.Records[0].ID, "size", bt.Size)
	if !ordered(x.kind) {
		if err := x.poller.Failed(ctx, bt.Records); err != nil {
			x.log.Error("hand back oversize record", "err", err)
		}
		return
	}
	d := Discard{Records: bt.Records, Condition: string(destination.MaximumPayloadSizeExceeded)}
	if err := x.sendFailure(ctx, bt, d); err != nil {
		return
	}
	if err := x.poller.Done(ctx, bt.Records); err != nil {
		x.log.Error("acknowledge oversize record", "err", err)
	}
}

// handleQueue invokes a batch of a queue source once and hands the outcome
// to the broker: done records are deleted or acked, failed ones come back
// after the visibility timeout or a requeue (spec 4.2, 6).
func (x *run) handleQueue(ctx context.Context, bt *batcher.Batch) {
	res, err := x.invoke(ctx, bt.Size, bt.AppendEvent)
	n := len(bt.Records)
	x.mm.add(cInvoked, n)
	fail := func(recs []source.Record, why string) {
		x.mm.add(cFailedInvoke, n)
		x.rep.ProcessingResult("PROBLEM: " + why)
		if err := x.poller.Failed(ctx, recs); err != nil {
			x.log.Error("hand back failed records", "err", err)
		}
	}
	switch {
	case err != nil:
		fail(bt.Records, err.Error())
		return
	case res.Failed():
		fail(bt.Records, "Function call failed")
		return
	}
	if x.policy.PartialResponses {
		bad, perr := IDFailures(res.Payload, bt.Records)
		if perr != nil {
			fail(bt.Records, "Function call failed")
			return
		}
		if len(bad) > 0 {
			set := make(map[int]bool, len(bad))
			for _, i := range bad {
				set[i] = true
			}
			var ok, failed []source.Record
			for i, r := range bt.Records {
				if set[i] {
					failed = append(failed, r)
				} else {
					ok = append(ok, r)
				}
			}
			if err := x.poller.Done(ctx, ok); err != nil {
				x.log.Error("acknowledge records", "err", err)
			} else {
				x.mm.add(cDeleted, len(ok))
			}
			fail(failed, "Function call failed")
			return
		}
	}
	if err := x.poller.Done(ctx, bt.Records); err != nil {
		x.log.Error("acknowledge records", "err", err)
		return
	}
	x.mm.add(cDeleted, len(bt.Records))
	x.rep.ProcessingResult("OK")
}
