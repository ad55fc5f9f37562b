package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/esmd/esmd/batcher"
	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Runner runs the data plane of the mappings of one source: it implements
// esm.Runner (and esm.SourceChecker when the source has a create-time
// check). The source's Descriptor says everything that is specific to it;
// everything after the poller (filtering, batching, invoking, retries,
// OnFailure, acknowledgement) is the same for every source.
type Runner struct {
	// Source describes the source. Required.
	Source *source.Descriptor
	// Env is what the source's Open and Check may use.
	Env *source.Env
	// Open, when set, replaces Source.Open (tests run in-memory pollers
	// through it).
	Open func(ctx context.Context, m *esm.Mapping) (source.Poller, error)
	// Invoker calls the function.
	Invoker dispatcher.Invoker
	// Destination returns the sender for an OnFailure destination; nil
	// when esmd was started without destination clients (records that would
	// go to a destination are then dropped with a log line).
	Destination func(dest string, m *esm.Mapping) (destination.Sender, error)
	// Log receives the pipeline's logs (default: discard).
	Log *slog.Logger
	// MaxBuffered is how many records a mapping buffers before polling
	// pauses. Default: 4 batches' worth, at least 10,000, and for sources
	// with lanes of their own (Kafka partitions, shards) at least two
	// batches per lane, up to 100,000 records: a lane that holds less than
	// a batch waits for its batching window, so a bound below one batch
	// per lane leaves lanes idle while others hold the records.
	MaxBuffered int
	// MaxBufferedBytes bounds the same buffer in bytes (the records'
	// encoded size). Default DefaultMaxBufferedBytes, raised to two
	// batches per lane.
	MaxBufferedBytes int
	// MaxInFlight caps concurrent invocations of a mapping (default 1,000;
	// SQS ScalingConfig.MaximumConcurrency lowers it). With a store several
	// workers share (Sharer in Env.Store), a queue mapping's cap
	// (MaximumConcurrency, Descriptor.Concurrency) is split among them.
	MaxInFlight int
	// RetryDelay and MaxRetryDelay bound the backoff between attempts
	// (defaults 100 ms and 30 s).
	RetryDelay, MaxRetryDelay time.Duration
	// DrainTimeout bounds the second phase of a stop (disable, update,
	// delete, shutdown): polling stops at once, then invocations in flight
	// may finish and be acknowledged for up to DrainTimeout before they are
	// cancelled. Retries do not start once the stop began. Default 10 s;
	// negative cancels at once.
	DrainTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics, when set, counts the mapping's events and shows its
	// pollers' lane figures.
	Metrics *Metrics
}

// CheckSource implements esm.SourceChecker with the source's create-time
// check.
func (r *Runner) CheckSource(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	if r.Source == nil || r.Source.Check == nil || src != r.Source.Source {
		return nil
	}
	return r.Source.Check(ctx, r.env(), cfg)
}

// CheckAccess implements esm.AccessChecker with the source's Access check.
func (r *Runner) CheckAccess(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	if r.Source == nil || r.Source.Access == nil || src != r.Source.Source {
		return nil
	}
	return r.Source.Access(ctx, r.env(), cfg)
}

func (r *Runner) env() *source.Env {
	if r.Env != nil {
		return r.Env
	}
	return &source.Env{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Flags: map[string][]string{}}
}

// BatchPolicy returns the batching policy of a mapping: its source's
// defaults with the mapping's BatchSize, window, ParallelizationFactor and
// tumbling window.
func BatchPolicy(d *source.Descriptor, m *esm.Mapping) batcher.Policy {
	p := batcher.Policy{BatchSize: d.Batching.BatchSize, Window: d.Batching.Window, WindowStart: batcher.AfterInvoke, Linger: d.Batching.Linger}
	if d.Batching.FromFirstRecord {
		p.WindowStart = batcher.FirstRecord
	}
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
	p.Failures = source.IDFailures
	if d := r.Source; d != nil {
		if d.Failures != nil {
			p.Failures = d.Failures
		}
		if d.MaxRetryAttempts != nil {
			p.MaxRetryAttempts = d.MaxRetryAttempts(m, p.MaxRetryAttempts)
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
	src     *source.Descriptor
	stop    context.Context // done when the stop begins: no more retries
	queue   bool            // Delivery Queue: failures go back to the broker
	fsrc    filter.Source
	match   *filter.Matcher
	batches *batcher.Batcher
	poller  source.Poller
	policy  Policy
	sender  destination.Sender
	lim     *limiter // invocations in flight
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
	if r.Source == nil {
		return errors.New("pipeline: Runner without a source descriptor")
	}
	if err := r.Source.Validate(); err != nil {
		return err
	}
	limit := r.inFlight(m)
	// Several workers on one store split a queue mapping's cap among them
	// (Sharer); alone, a worker applies the whole of it.
	if c := r.concurrencyCap(m); c > 0 {
		if sh, worker, ttl := r.sharer(); sh != nil {
			return r.runShared(ctx, m, rep, sh, worker, ttl, limit, c)
		}
	}
	return r.run(ctx, m, rep, newLimiter(limit))
}

// inFlight is the most invocations of m in flight on this worker when it
// runs alone: MaxInFlight, or ScalingConfig.MaximumConcurrency.
func (r *Runner) inFlight(m *esm.Mapping) int {
	if sc := m.Config.ScalingConfig; sc != nil && sc.MaximumConcurrency != nil {
		return int(*sc.MaximumConcurrency)
	}
	if r.MaxInFlight <= 0 {
		return 1000
	}
	return r.MaxInFlight
}

// run is Run with lim, the mapping's in-flight limit. The batcher deals
// records to lanes (Batching.Deal) for the mapping's whole limit, even when
// lim is below it: lim bounds what is invoked at once, not the lanes.
func (r *Runner) run(ctx context.Context, m *esm.Mapping, rep esm.Reporter, lim *limiter) error {
	x := &run{r: r, m: m, rep: rep, src: r.Source, queue: r.Source.Delivery == source.Queue, fsrc: r.Source.Filter, now: r.Now}
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
	x.policy = r.RetryPolicy(m)
	if d := m.Config.DestinationConfig; d != nil && d.OnFailure != nil && d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" && r.Destination != nil {
		if x.sender, err = r.Destination(*d.OnFailure.Destination, m); err != nil {
			return x.shown(fmt.Errorf("OnFailure destination: %w", err))
		}
		// A sender that owns a client (a Kafka producer) is closed with the
		// pipeline.
		if c, ok := x.sender.(io.Closer); ok {
			defer c.Close()
		}
	}
	x.lim = lim
	policy := BatchPolicy(x.src, m)
	if x.src.Batching.Deal {
		policy.Lanes = r.inFlight(m) // one batch in flight per lane
	}
	if x.batches, err = batcher.New(policy, x.src.Envelope(m)); err != nil {
		return err
	}
	ahead := r.newReadAhead(x.batches, policy, x.src.Batching.Deal)
	open := r.Open
	if open == nil {
		open = func(ctx context.Context, m *esm.Mapping) (source.Poller, error) { return x.src.Open(ctx, r.env(), m) }
	}
	if x.poller, err = open(ctx, m); err != nil {
		return x.disableOr(ctx, x.shown(fmt.Errorf("open source: %w", err)))
	}
	x.mm = r.Metrics.mapping(m)
	x.mm.attach(x.poller)
	defer x.mm.detach(x.poller)

	// Two contexts make the two-phase stop: stop (ctx, cancelled by the
	// engine or a loop's error) ends polling, dispatching and retries;
	// work (cancelled DrainTimeout later) bounds the invocations and
	// acknowledgements already under way, which may finish in between.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	x.stop = stop
	x.policy.Sleep = func(_ context.Context, d time.Duration) error { return sleep(stop, d) }
	var loops, handlers sync.WaitGroup
	errc := make(chan error, 2)
	space := make(chan struct{}, 1) // signalled when a batch completes
	loops.Add(2)
	go func() {
		defer loops.Done()
		if err := x.pollLoop(stop, ahead, space); err != nil && stop.Err() == nil {
			errc <- err
			cancel()
		}
	}()
	go func() {
		defer loops.Done()
		if err := x.dispatchLoop(stop, work, &handlers, space); err != nil && stop.Err() == nil {
			errc <- err
			cancel()
		}
	}()
	<-stop.Done()
	// Phase one: nothing new starts. What was never invoked goes back to
	// the source at once (a queue makes it visible again; an ordered source
	// reads it again after its checkpoint).
	abandoned := x.batches.Abandon()
	loops.Wait()
	if len(abandoned) > 0 {
		if err := x.poller.Ack(work, abandoned, source.ErrStopped); err != nil {
			x.log.Warn("hand back records never invoked", "err", err)
		}
	}
	x.drain(&handlers, cancelWork)
	cerr := x.poller.Close()
	if cerr != nil {
		x.log.Warn("closing the source", "err", cerr)
	}
	select {
	case err := <-errc:
		return x.disableOr(ctx, x.shown(err))
	default:
	}
	return nil
}

// drain is the second phase of a stop: it waits for the batches in flight
// to finish and be acknowledged, for up to DrainTimeout, then cancels what
// is left and waits for it.
func (x *run) drain(handlers *sync.WaitGroup, cancelWork context.CancelFunc) {
	d := x.r.DrainTimeout
	if d == 0 {
		d = 10 * time.Second
	}
	done := make(chan struct{})
	go func() {
		handlers.Wait()
		close(done)
	}()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
			x.log.Warn("invocations still in flight after the drain timeout are cancelled", "timeout", d)
		}
	}
	cancelWork()
	<-done
}

// shown returns what of err the mapping's LastProcessingResult may show: a
// source's *source.Problem shows its phrase only, and its detail (which may
// say what listens on a host:port the caller named) goes to the log.
func (x *run) shown(err error) error {
	shown, detail := source.Shown(err)
	if detail != nil {
		x.log.Warn("source problem", "problem", shown.Error(), "err", detail)
	}
	return shown
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

func (x *run) pollLoop(ctx context.Context, ahead *readAhead, space <-chan struct{}) error {
	ender, _ := x.poller.(source.LaneEnder)
	for {
		for ahead.full() {
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
			if err := x.poller.Ack(ctx, dropped, nil); err != nil {
				return fmt.Errorf("acknowledge filtered records: %w", err)
			}
			if x.queue {
				x.mm.add(cDeleted, len(dropped))
			}
		}
		if len(kept) > 0 {
			if err := x.batches.AddAll(kept); err != nil {
				return nil // closed
			}
		}
		if ender != nil {
			for _, lane := range ender.EndedLanes() {
				x.batches.EndLane(lane)
			}
		}
	}
}

// filter splits records into those the FilterCriteria keep and those they
// drop; a record the filter cannot read is dropped.
func (x *run) filter(recs []source.Record) (kept, dropped []source.Record) {
	kept = make([]source.Record, 0, len(recs))
	// The filter reads the bytes: records that encode on demand are
	// encoded here, once, into one buffer for the whole poll.
	size := 0
	for i := range recs {
		if recs[i].Encoder != nil && recs[i].Data == nil {
			size += recs[i].Size
		}
	}
	slab := make([]byte, 0, size)
	for _, rec := range recs {
		if rec.Encoder != nil && rec.Data == nil {
			start := len(slab)
			slab = rec.AppendTo(slab)
			rec.Data, rec.Encoder = slab[start:len(slab):len(slab)], nil
		}
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

// dispatchLoop takes batches from the batcher until stop is done and
// handles each in its own goroutine (counted in handlers) with the work
// context.
func (x *run) dispatchLoop(stop, work context.Context, handlers *sync.WaitGroup, space chan<- struct{}) error {
	for {
		bt, err := x.batches.Next(stop)
		if err != nil {
			if stop.Err() != nil || errors.Is(err, batcher.ErrClosed) {
				return nil
			}
			return err
		}
		if x.lim.acquire(stop) != nil {
			return nil
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer x.lim.release()
			x.handleOn(stop, work, bt, space)
		}()
	}
}

// handleOn handles bt and, while the pipeline is not stopping, the batches
// that are ready when it finishes: a handler goes on with the next ready
// batch (of any lane) itself, keeping its concurrency slot, rather than
// handing over to dispatchLoop and a new goroutine: two fewer goroutine
// wake-ups per batch on a busy machine. It goes on only while the limiter
// lets it keep the slot: dispatchLoop waiting for a slot (with a batch it
// took) or a lowered limit (a worker's share) make it release the slot.
func (x *run) handleOn(stop, work context.Context, bt *batcher.Batch, space chan<- struct{}) {
	for bt != nil {
		state := x.handle(work, bt)
		var next *batcher.Batch
		var err error
		if stop.Err() == nil && x.lim.keep() {
			next, err = x.batches.DoneNext(bt, state)
		} else {
			err = x.batches.Done(bt, state)
		}
		if err != nil && !errors.Is(err, batcher.ErrClosed) {
			x.log.Error("release batch", "err", err)
		}
		select {
		case space <- struct{}{}:
		default:
		}
		bt = next
	}
}

// handle takes one batch to its outcome and returns the tumbling-window
// state for the next invocation of its window (nil without windows). ctx
// is the work context: invocations and acknowledgements use it, and the
// retry backoff ends when the stop begins (x.stop).
func (x *run) handle(ctx context.Context, bt *batcher.Batch) []byte {
	if bt.Oversize {
		x.oversize(ctx, bt)
		return nil
	}
	if x.queue {
		x.handleQueue(ctx, bt)
		return nil
	}
	if bt.Window != nil && len(bt.Records) == 0 {
		x.windowEnd(ctx, bt)
		return nil
	}
	// A lane another worker took over (source.LaneHolder) is invoked no
	// more, not even a retry: its records stay unfinished here, and its
	// new holder reads them again from the checkpoint.
	holder, _ := x.poller.(source.LaneHolder)
	ctx, lost := context.WithCancel(ctx)
	defer lost()
	var state []byte
	invoke := func(ctx context.Context, recs []source.Record) (dispatcher.Result, error) {
		if holder != nil && !holder.Holds(bt.Lane) {
			lost()
			return dispatcher.Result{}, ctx.Err()
		}
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
		return nil // stopped: the records stay unfinished and are read again
	}
	// The last attempt succeeded unless records were discarded: a batch
	// that succeeded after retries shows OK again, as its last processing
	// result.
	if !h.discarded {
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
	bo := backoff.New(x.policy.RetryDelay, x.policy.MaxRetryDelay)
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
		if bo.Wait(x.stop) != nil {
			return
		}
	}
}

// builder returns a builder holding records of a batch.
func (x *run) builder(bt *batcher.Batch, recs []source.Record) *payload.Builder {
	b := payload.NewBuilder(bt.Envelope())
	for i := range recs {
		recs[i].AddTo(b)
	}
	return b
}

// event builds the invocation event of records of a batch (all of them, or
// a bisected or partially retried part).
func (x *run) event(bt *batcher.Batch, recs []source.Record) []byte {
	if len(recs) == len(bt.Records) {
		return bt.AppendEvent(make([]byte, 0, bt.Size))
	}
	return x.builder(bt, recs).Bytes()
}

// streamHandler acknowledges the outcomes of an ordered batch.
type streamHandler struct {
	x         *run
	bt        *batcher.Batch
	discarded bool // records went to the OnFailure destination (or were dropped)
}

func (h *streamHandler) Delivered(ctx context.Context, recs []source.Record) error {
	if len(recs) == 0 {
		return nil
	}
	return h.x.poller.Ack(ctx, recs, nil)
}

func (h *streamHandler) Discarded(ctx context.Context, d Discard) error {
	h.discarded = true
	if err := h.x.sendFailure(ctx, h.bt, d); err != nil {
		return err
	}
	return h.x.poller.Ack(ctx, d.Records, nil)
}

// Attempted counts an invocation (pipeline.AttemptReporter).
func (h *streamHandler) Attempted(n int, failed bool) {
	h.x.mm.add(cInvoked, n)
	if failed {
		h.x.mm.add(cFailedInvoke, n)
	}
}

func (h *streamHandler) Retrying(err error) {
	h.x.rep.ProcessingResult("PROBLEM: " + problem(err))
}

func problem(err error) string {
	if errors.Is(err, errFunctionFailed) {
		return "Function call failed"
	}
	return err.Error()
}

// sendFailure routes discarded records to the OnFailure destination,
// retrying until it accepts them (records are not done before that) or the
// stop begins.
func (x *run) sendFailure(ctx context.Context, bt *batcher.Batch, d Discard) error {
	if x.sender == nil {
		x.log.Warn("records discarded without an OnFailure destination", "lane", bt.Lane, "condition", d.Condition, "records", len(d.Records))
		x.mm.add(cDropped, len(d.Records))
		return nil
	}
	rec := x.failureRecord(bt, d)
	bo := backoff.New(100*time.Millisecond, 30*time.Second)
	for {
		err := x.sender.Send(ctx, rec)
		if err == nil {
			x.mm.add(cOnFailureDelivered, len(d.Records))
			return nil
		}
		x.log.Warn("OnFailure destination refused a record; retrying", "err", err)
		x.rep.ProcessingResult("PROBLEM: OnFailure destination: " + err.Error())
		if err := bo.Wait(x.stop); err != nil {
			return err
		}
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
	if x.src.FailureInfo != nil {
		rec.Info = x.src.FailureInfo(x.m, bt.Lane, d.Records, len(rec.Payload))
	}
	return rec
}

// oversize handles a record whose event alone passes the 6 MB limit, as
// its source's descriptor says (Oversize): routed to the OnFailure
// destination where there is one and consumed, so its lane is never stuck
// (spec 2.3); handed back to the broker, whose redrive policy ends its life
// (SQS); or dropped (Amazon MQ).
func (x *run) oversize(ctx context.Context, bt *batcher.Batch) {
	if len(bt.Records) == 0 {
		return
	}
	x.log.Warn("record larger than the invocation payload limit", "lane", bt.Lane, "id", bt.Records[0].ID, "size", bt.Size)
	switch x.src.Oversize {
	case source.OversizeRedeliver:
		if err := x.poller.Ack(ctx, bt.Records, errOversize); err != nil {
			x.log.Error("hand back oversize record", "err", err)
		}
		return
	case source.OversizeDrop:
		x.mm.add(cDropped, len(bt.Records))
		if err := x.poller.Ack(ctx, bt.Records, nil); err != nil {
			x.log.Error("acknowledge oversize record", "err", err)
		}
		return
	}
	d := Discard{Records: bt.Records, Condition: string(destination.MaximumPayloadSizeExceeded)}
	if err := x.sendFailure(ctx, bt, d); err != nil {
		return
	}
	if err := x.poller.Ack(ctx, bt.Records, nil); err != nil {
		x.log.Error("acknowledge oversize record", "err", err)
	}
}

// errOversize is the outcome of a queue record too big for any invocation.
var errOversize = errors.New("record larger than the invocation payload limit")

// handleQueue invokes a batch of a queue source once and hands the outcome
// to the broker: done records are deleted or acked, failed ones come back
// after the visibility timeout or a requeue (spec 4.2, 6).
func (x *run) handleQueue(ctx context.Context, bt *batcher.Batch) {
	res, err := x.invoke(ctx, bt.Size, bt.AppendEvent)
	n := len(bt.Records)
	x.mm.add(cInvoked, n)
	var outcome error
	switch {
	case err != nil:
		outcome = err
	case res.Failed():
		outcome = source.ErrFailed
	case x.policy.PartialResponses:
		be, perr := x.policy.Failures(res.Payload, bt.Records)
		switch {
		case perr != nil:
			outcome = source.ErrFailed
		case be != nil && be.Len() > 0:
			outcome = be
		}
	}
	if outcome != nil {
		x.mm.add(cFailedInvoke, n)
		why := "Function call failed"
		if err != nil {
			why = err.Error()
		}
		x.rep.ProcessingResult("PROBLEM: " + why)
	}
	done, _ := source.Split(bt.Records, outcome)
	if err := x.poller.Ack(ctx, bt.Records, outcome); err != nil {
		x.log.Error("acknowledge records", "err", err)
		return
	}
	x.mm.add(cDeleted, len(done))
	if outcome == nil {
		x.rep.ProcessingResult("OK")
	}
}
