package documentdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/source"
)

// maxPoll bounds the records one Poll returns.
const maxPoll = 10000

// pages bounds the reads waiting for Poll: with the pipeline's own buffer
// (it stops polling while it holds a few batches' worth), what the poller
// reads ahead of the function.
const pages = 8

// startAfterPrefix marks a checkpoint that is the token of an invalidate
// event: the stream goes on with startAfter, since resumeAfter refuses an
// invalidate token.
const startAfterPrefix = "startAfter:"

// watcher is a collection or a database: what a change stream is opened
// on.
type watcher interface {
	Watch(ctx context.Context, pipeline any, opts ...options.Lister[options.ChangeStreamOptions]) (*mongo.ChangeStream, error)
}

// Poller reads one change stream and implements source.Poller. Make it
// with Open; it is safe for concurrent use.
type Poller struct {
	cfg     Config
	client  *mongo.Client
	target  watcher
	lane    string
	tracker *source.Tracker

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reader and the writer

	out       chan []source.Record
	fatal     chan struct{} // closed, with fatalErr set, when the reader gave up
	fatalErr  error
	fatalOnce sync.Once

	age  atomic.Int64 // IteratorAge of the last read, in ns
	read atomic.Bool  // a read succeeded

	// doneMu serialises the tracker's Done and the choice of the position
	// to write; writeMu serialises the writes, taken after doneMu (never
	// the other way), so the checkpoint never goes backwards.
	doneMu  sync.Mutex
	writeMu sync.Mutex
	dirty   string          // coalesced position not yet written (doneMu)
	invals  map[string]bool // tokens of invalidate events not yet checkpointed (doneMu)
	flush   chan struct{}   // wakes the writer
}

// Open connects to the cluster and opens the change stream where the
// mapping's checkpoint says, else at Config.StartingPosition. An error
// wraps ErrAuthentication or ErrHistoryLost when the server says so, in an
// *esm.DisableError (Reason EVENT_SOURCE_AUTHN_ERROR or ReasonHistoryLost)
// on which the pipeline disables the mapping.
func Open(ctx context.Context, cfg Config) (*Poller, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	copts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("documentdb: %w", err)
	}
	p := &Poller{
		cfg: cfg, client: client, lane: Lane(cfg.Database, cfg.Collection),
		tracker: source.NewTracker(),
		out:     make(chan []source.Record, pages),
		fatal:   make(chan struct{}),
		invals:  map[string]bool{},
		flush:   make(chan struct{}, 1),
	}
	db := client.Database(cfg.Database)
	p.target = db
	if cfg.Collection != "" {
		p.target = db.Collection(cfg.Collection)
	}
	cs, from, err := p.open(ctx)
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
		return nil, disabling(err)
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Add(1)
	go p.reader(cs, from)
	if cfg.CheckpointInterval > 0 {
		p.wg.Add(1)
		go p.writer()
	}
	return p, nil
}

// Lane is the lane of a mapping's records: "<database>.<collection>", or
// "<database>" for a whole-database stream. It keys the checkpoint, so a
// mapping updated to read another namespace starts afresh.
func Lane(database, collection string) string {
	if collection == "" {
		return database
	}
	return database + "." + collection
}

// open opens the stream after the checkpoint, else at the starting
// position, and returns it with where it started. A LATEST stream without
// a checkpoint checkpoints where it started (the server's post-batch
// resume token) at once, so that a restart before its first event is done
// does not skip the events written in between.
func (p *Poller) open(ctx context.Context) (*mongo.ChangeStream, start, error) {
	cp, ok, err := p.cfg.Positions.Position(ctx, p.cfg.Mapping, p.lane)
	if err != nil {
		return nil, start{}, fmt.Errorf("documentdb: checkpoint of %s: %w", p.lane, err)
	}
	var from start
	startAt, at := p.cfg.StartingPosition, p.cfg.Timestamp
	if pos, ts, isReplay := parseReplay(cp); ok && isReplay {
		ok, startAt, at = false, pos, ts // rewound by esmd replay (Rewind)
	}
	switch {
	case ok:
		from = resumePoint(cp)
	case startAt == TrimHorizon:
		// The oldest retained event can expire between the search and the
		// stream's opening: search again then.
		for attempt := 1; ; attempt++ {
			ts, err := p.trimHorizon(ctx)
			if err != nil {
				return nil, start{}, err
			}
			from = start{at: &ts}
			cs, err := p.watch(ctx, from)
			if err == nil || attempt == 3 || !errors.Is(err, ErrHistoryLost) {
				return cs, from, err
			}
		}
	case startAt == AtTimestamp:
		from.at = &bson.Timestamp{T: uint32(at.Unix())}
	}
	cs, err := p.watch(ctx, from)
	if err != nil || ok || from.at != nil {
		return cs, from, err
	}
	if tok := tokenData(cs.ResumeToken()); tok != "" && cs.RemainingBatchLength() == 0 {
		if err := p.cfg.Positions.SetPosition(ctx, p.cfg.Mapping, p.lane, tok); err != nil {
			_ = cs.Close(context.WithoutCancel(ctx))
			return nil, start{}, fmt.Errorf("documentdb: checkpoint of %s: %w", p.lane, err)
		}
		from = start{after: tok}
	}
	return cs, from, nil
}

// start is where a stream opens: after a token (resumeAfter, or startAfter
// for an invalidate event's), at an operation time, or at the end (none).
type start struct {
	after      string
	startAfter bool
	at         *bson.Timestamp
}

// resumePoint is the start after a checkpoint.
func resumePoint(cp string) start {
	if tok, ok := strings.CutPrefix(cp, startAfterPrefix); ok {
		return start{after: tok, startAfter: true}
	}
	return start{after: cp}
}

// watch opens the change stream at from.
func (p *Poller) watch(ctx context.Context, from start) (*mongo.ChangeStream, error) {
	o := options.ChangeStream().SetMaxAwaitTime(p.cfg.MaxAwaitTime)
	if p.cfg.FullDocument == "UpdateLookup" {
		o.SetFullDocument(options.UpdateLookup)
	}
	if p.cfg.BatchSize > 0 {
		o.SetBatchSize(p.cfg.BatchSize)
	}
	switch {
	case from.after != "" && from.startAfter:
		o.SetStartAfter(bson.D{{Key: "_data", Value: from.after}})
	case from.after != "":
		o.SetResumeAfter(bson.D{{Key: "_data", Value: from.after}})
	case from.at != nil:
		o.SetStartAtOperationTime(from.at)
	}
	cs, err := p.target.Watch(ctx, mongo.Pipeline{}, o)
	if err != nil {
		return nil, fmt.Errorf("documentdb: open the change stream of %s: %w", p.lane, classify(err))
	}
	return cs, nil
}

// trimHorizon returns the earliest operation time the stream may start
// at: TRIM_HORIZON, the oldest event it still retains (spec DOC-4).
//
// A change stream cannot be asked for it: a server answers
// startAtOperationTime before its retained history with code 286
// ChangeStreamHistoryLost, and after it with a stream. So a start at the
// first second of 1970 is tried (nothing was ever trimmed: every event is
// there), then the earliest accepted time is found by bisecting the 64-bit
// (seconds, increment) range between it and now: at most 64 probes, each
// an aggregate asking for no events and closed at once, made only when a
// TRIM_HORIZON mapping starts without a checkpoint.
func (p *Poller) trimHorizon(ctx context.Context) (bson.Timestamp, error) {
	ts := func(v uint64) bson.Timestamp { return bson.Timestamp{T: uint32(v >> 32), I: uint32(v)} }
	probe := func(v uint64) (bool, error) {
		t := ts(v)
		cs, err := p.target.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&t).SetBatchSize(0))
		if err != nil {
			if err := classify(err); errors.Is(err, ErrHistoryLost) {
				return false, nil
			}
			return false, fmt.Errorf("documentdb: find the oldest event of %s: %w", p.lane, classify(err))
		}
		_ = cs.Close(ctx)
		return true, nil
	}
	lo := uint64(1) << 32
	if ok, err := probe(lo); ok || err != nil {
		return ts(lo), err
	}
	hi := uint64(time.Now().Unix()+1) << 32
	ok, err := probe(hi)
	if err != nil {
		return bson.Timestamp{}, err
	}
	if !ok {
		return bson.Timestamp{}, fmt.Errorf("documentdb: find the oldest event of %s: %w (even at %v)", p.lane, ErrHistoryLost, time.Unix(int64(hi>>32), 0))
	}
	// probe(lo) is false and probe(hi) true.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := probe(mid)
		if err != nil {
			return bson.Timestamp{}, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return ts(hi), nil
}

// tokenData returns a resume token's _data, or "".
func tokenData(tok bson.Raw) string {
	if len(tok) == 0 {
		return ""
	}
	s, _ := tok.Lookup("_data").StringValueOK()
	return s
}

// reader reads the stream into p.out until the poller closes or fails.
// The driver resumes the errors it knows are resumable by itself; reader
// reopens the stream after any other error (and after an invalidate event,
// with startAfter), from the last event it read, with backoff. A refused
// login or a position out of the stream's history ends it with an
// *esm.DisableError, and so does nothing else: past Config.MaxDowntime of
// failures, Poll returns the last one.
//
// from is where cs started: a reopened stream starts there when cs read
// nothing.
func (p *Poller) reader(cs *mongo.ChangeStream, from start) {
	defer p.wg.Done()
	defer func() {
		if cs != nil {
			// Bounded: a cluster that went away must not hold up Close.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = cs.Close(ctx)
			cancel()
		}
	}()
	var (
		downSince time.Time
		bo        = backoff.New(p.cfg.ReconnectDelay, p.cfg.MaxReconnectDelay)
		idle      = backoff.New(10*time.Millisecond, p.cfg.MaxAwaitTime)
	)
	for p.ctx.Err() == nil {
		if cs == nil {
			var err error
			if cs, err = p.watch(p.ctx, from); err != nil {
				if p.ctx.Err() != nil {
					return
				}
				if !p.retry(err, &downSince) || backoff.Sleep(p.ctx, bo.Next()) != nil {
					return
				}
				continue
			}
			downSince = time.Time{}
			bo.Reset()
		}
		asked := time.Now()
		if !cs.TryNext(p.ctx) {
			if p.ctx.Err() != nil {
				return
			}
			err := cs.Err()
			switch {
			case err != nil:
				err = fmt.Errorf("documentdb: read the change stream of %s: %w", p.lane, classify(err))
				from = p.resumeFrom(cs, from, false)
				_ = cs.Close(p.ctx)
				cs = nil
				if !p.retry(err, &downSince) || backoff.Sleep(p.ctx, bo.Next()) != nil {
					return
				}
			case cs.ID() == 0:
				// The stream ended after an invalidate event (its collection
				// or database was dropped or renamed): a new one starts after
				// it.
				from = p.resumeFrom(cs, from, true)
				_ = cs.Close(p.ctx)
				cs = nil
			default:
				// An empty getMore: the stream is at its tip. A server that
				// answers at once rather than waiting MaxAwaitTime is asked
				// again after a growing pause, not in a busy loop.
				p.age.Store(0)
				p.read.Store(true)
				if time.Since(asked) < 10*time.Millisecond {
					if backoff.Sleep(p.ctx, idle.Next()) != nil {
						return
					}
				} else {
					idle.Reset()
				}
			}
			continue
		}
		idle.Reset()
		page, err := p.page(cs)
		if err != nil {
			p.fail(err)
			return
		}
		p.observe(page)
		select {
		case p.out <- page:
		case <-p.ctx.Done():
			return
		}
	}
}

// page reads the event TryNext returned and the rest of its batch, which
// the driver holds already, and registers them with the tracker.
func (p *Poller) page(cs *mongo.ChangeStream) ([]source.Record, error) {
	page := make([]source.Record, 0, 1+cs.RemainingBatchLength())
	for {
		r, inval, err := p.record(cs.Current)
		if err != nil {
			return nil, err
		}
		if inval {
			p.doneMu.Lock()
			p.invals[r.Seq] = true
			p.doneMu.Unlock()
		}
		page = append(page, r)
		if cs.RemainingBatchLength() == 0 || !cs.TryNext(p.ctx) {
			break
		}
	}
	for i := range page {
		p.tracker.Add(p.lane, page[i].Seq)
	}
	return page, nil
}

// resumeFrom returns where the stream reopens after cs: after the last
// token it read (an event's, or the server's post-batch token; with
// startAfter when cs ended with an invalidate event), else where cs
// started.
func (p *Poller) resumeFrom(cs *mongo.ChangeStream, last start, invalidated bool) start {
	tok := tokenData(cs.ResumeToken())
	if tok == "" {
		return last
	}
	return start{after: tok, startAfter: invalidated}
}

// retry reports whether the reader may try again after err: not when the
// server refused the mapping for good, nor after MaxDowntime of failures;
// then Poll returns err.
func (p *Poller) retry(err error, downSince *time.Time) bool {
	var de *esm.DisableError
	if d := disabling(err); errors.As(d, &de) {
		p.fail(d)
		return false
	}
	now := time.Now()
	if downSince.IsZero() {
		*downSince = now
	}
	if now.Sub(*downSince) >= p.cfg.MaxDowntime {
		p.fail(fmt.Errorf("%w (failing for %v)", err, now.Sub(*downSince).Round(time.Second)))
		return false
	}
	p.cfg.Log.Warn("documentdb: change stream failed; reopening it", "stream", p.lane, "err", err)
	return true
}

func (p *Poller) fail(err error) {
	p.fatalOnce.Do(func() {
		p.fatalErr = err
		close(p.fatal)
	})
}

// observe records the IteratorAge of a read: the age of its last event
// (its clusterTime, whole seconds), as AWS's IteratorAge is the age of the
// last record of an event when it is sent (spec DOC-10).
func (p *Poller) observe(page []source.Record) {
	if a := page[len(page)-1].Arrival; !a.IsZero() {
		p.age.Store(int64(max(time.Since(a), 0)))
	}
	p.read.Store(true)
}

// Lag returns the IteratorAge of the stream once it was read, by lane.
func (p *Poller) Lag() map[string]time.Duration {
	if !p.read.Load() {
		return map[string]time.Duration{}
	}
	return map[string]time.Duration{p.lane: time.Duration(p.age.Load())}
}

var errClosed = errors.New("documentdb: poller closed")

// Poll returns the events read since the last Poll, at least one, in
// stream order, waiting for the first until ctx is done. It returns the
// error that ended the reader: an *esm.DisableError, or the last error
// after Config.MaxDowntime of failures.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	select {
	case recs := <-p.out:
	more:
		for len(recs) < maxPoll {
			select {
			case r := <-p.out:
				recs = append(recs, r...)
			default:
				break more
			}
		}
		return recs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.fatal:
		return nil, p.fatalErr
	case <-p.ctx.Done():
		return nil, errClosed
	}
}

// Ack implements source.Poller: finished records move the checkpoint
// (Done). The stream is ordered: the pipeline retries failed records
// itself (until they succeed: spec DOC-6), and a failure outcome leaves
// them unfinished, to be read again after a restart.
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	return source.AckSplit(ctx, recs, outcome, p.Done, nil)
}

// Done checkpoints the stream at its last event such that it and every
// event before it are done: its resume token, from which a restart resumes
// (resumeAfter). With a CheckpointInterval the position is written by the
// writer, later.
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	p.doneMu.Lock()
	defer p.doneMu.Unlock()
	cp := ""
	for i := range recs {
		if c, ok := p.tracker.Done(p.lane, recs[i].Seq); ok {
			cp = c
		}
	}
	if cp == "" {
		return nil
	}
	if p.invals[cp] {
		delete(p.invals, cp)
		cp = startAfterPrefix + cp
	}
	if p.cfg.CheckpointInterval > 0 {
		p.dirty = cp
		select {
		case p.flush <- struct{}{}:
		default:
		}
		return nil
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if err := p.cfg.Positions.SetPosition(context.WithoutCancel(ctx), p.cfg.Mapping, p.lane, cp); err != nil {
		return fmt.Errorf("documentdb: checkpoint of %s: %w", p.lane, err)
	}
	return nil
}

// writer writes the coalesced position, at most once per
// CheckpointInterval.
func (p *Poller) writer() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.flush:
		}
		p.writeDirty()
		if backoff.Sleep(p.ctx, p.cfg.CheckpointInterval) != nil {
			return
		}
	}
}

// writeDirty writes the coalesced position; a failed write is kept for the
// next one unless a newer position replaced it meanwhile.
func (p *Poller) writeDirty() {
	p.doneMu.Lock()
	cp := p.dirty
	p.dirty = ""
	if cp == "" {
		p.doneMu.Unlock()
		return
	}
	p.writeMu.Lock() // before doneMu is released: writes stay in order
	p.doneMu.Unlock()
	err := p.cfg.Positions.SetPosition(context.Background(), p.cfg.Mapping, p.lane, cp)
	p.writeMu.Unlock()
	if err != nil {
		p.cfg.Log.Warn("documentdb: checkpoint failed", "stream", p.lane, "err", err)
		p.doneMu.Lock()
		if p.dirty == "" {
			p.dirty = cp
		}
		p.doneMu.Unlock()
	}
}

// Close stops reading, writes the coalesced checkpoint and disconnects.
// Events handed out and not done are read again by the next poller, from
// the checkpoint.
func (p *Poller) Close() error {
	p.cancel()
	p.wg.Wait()
	p.writeDirty()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("documentdb: disconnect: %w", err)
	}
	return nil
}
