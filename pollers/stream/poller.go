package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// maxPoll bounds the records one Poll returns.
const maxPoll = 10000

// Poller reads one mapping's stream through a Client. It implements
// pipeline.Poller. See the package doc for what it does.
type Poller struct {
	cl      Client
	push    bool // cl pushes (Pusher)
	c       Config
	tracker *source.Tracker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	calls chan struct{} // semaphore of Client calls (MaxCalls)
	out   chan []source.Record
	// ended are the lanes whose end marker Poll took, for EndedLanes.
	endMu sync.Mutex
	ended []string
	errs  chan error
	relst chan struct{}

	// doneMu serialises the tracker's Done and the choice of positions to
	// write; writeMu serialises the writes themselves, taken after doneMu
	// (never the other way), so that positions never go backwards and a
	// shard's ShardEnd is never overwritten by an older position.
	doneMu  sync.Mutex
	writeMu sync.Mutex
	dirty   map[string]string // coalesced positions not yet written (doneMu)
	flush   chan struct{}     // wakes the writer
	// Without a CheckpointInterval, Done returns once its positions are
	// stored, and concurrent Dones share one write (group commit): seq
	// numbers the Dones that added to dirty (doneMu); syncMu, taken before
	// doneMu, elects the Done that writes, and stored is the last seq a
	// successful write covered (syncMu).
	seq    uint64
	syncMu sync.Mutex
	stored uint64

	mu     sync.Mutex
	shards map[string]*shard
	room   chan struct{} // closed and replaced when records are done

	leases *leaseState // with Config.Leases

	// reading counts the shards being read, which share
	// Config.MaxPendingBytes.
	reading atomic.Int32
}

type shard struct {
	id      string
	parents []string
	// fromStart: without a checkpoint the shard is read from its
	// beginning, not StartingPosition, because it appeared after the
	// poller started or a parent had a checkpoint when it started (the
	// mapping read the parent: the child was made since).
	fromStart bool
	// readDone is set once a read returned no next iterator.
	readDone bool
	finished chan struct{} // closed when the shard is done and checkpointed
	finOnce  sync.Once
	age      atomic.Int64 // IteratorAge of the last read, in ns
	read     atomic.Bool  // a read succeeded
	// The reader: ctx ends it (the poller's, or with leases one of its
	// own, cancelled when the lease goes), stopped is closed when it
	// returned. Both are set by startReader (p.mu).
	ctx     context.Context
	cancel  context.CancelFunc
	stopped chan struct{}
	// mean is the mean size of the records of the reader's last read with
	// records (0 before it): what a read's limit is estimated with.
	mean int
}

// New starts a Poller on cl. Shards are listed once before New returns, so
// a missing stream is an error here (cl.Classify(err) == NotFound).
func New(ctx context.Context, cl Client, c Config) (*Poller, error) {
	if c.Positions == nil {
		return nil, errors.New("stream: Config.Positions is required")
	}
	c.setDefaults()
	pu, ok := cl.(Pusher)
	p := &Poller{
		cl: cl, c: c, push: ok && pu.Pushes(),
		tracker: source.NewTracker(),
		calls:   make(chan struct{}, c.MaxCalls),
		out:     make(chan []source.Record, 16),
		errs:    make(chan error, 1),
		relst:   make(chan struct{}, 1),
		shards:  map[string]*shard{},
		room:    make(chan struct{}),
		dirty:   map[string]string{},
		flush:   make(chan struct{}, 1),
	}
	if c.Leases != nil {
		p.leases = newLeaseState()
		p.c.Positions = fenced{p: p, inner: c.Positions}
	}
	shards, err := cl.Shards(ctx)
	if err != nil {
		return nil, source.AWSProblem(err)
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.add(shards, true)
	p.wg.Add(1)
	go p.discover()
	if c.Leases != nil {
		p.wg.Add(1)
		go p.lease()
	}
	if c.CheckpointInterval > 0 {
		p.wg.Add(1)
		go p.writer()
	}
	return p, nil
}

// add starts a reader for every shard not seen before; initial is true for
// the listing made when the poller starts.
func (p *Poller) add(shards []Shard, initial bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var fresh []*shard
	for _, s := range shards {
		if _, ok := p.shards[s.ID]; ok || s.ID == "" {
			continue
		}
		sh := &shard{id: s.ID, fromStart: !initial, finished: make(chan struct{})}
		for _, par := range s.Parents {
			if par == "" {
				continue
			}
			sh.parents = append(sh.parents, par)
			if initial && !sh.fromStart {
				_, ok, err := p.c.Positions.Position(p.ctx, p.c.Mapping, par)
				sh.fromStart = ok || err != nil
			}
		}
		p.shards[s.ID] = sh
		fresh = append(fresh, sh)
	}
	if p.c.Leases != nil {
		return // the lease loop starts the readers of the shards it holds
	}
	for _, sh := range fresh {
		p.startReaderLocked(sh, p.ctx)
	}
}

// startReaderLocked starts a shard's reader under ctx. Called with p.mu.
func (p *Poller) startReaderLocked(sh *shard, ctx context.Context) {
	sh.ctx, sh.cancel = context.WithCancel(ctx)
	sh.stopped = make(chan struct{})
	p.wg.Add(1)
	go p.read(sh)
}

// discover lists the shards every ListInterval, or at once when a shard
// was read to its end.
func (p *Poller) discover() {
	defer p.wg.Done()
	t := time.NewTicker(p.c.ListInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.relst:
		}
		shards, err := p.cl.Shards(p.ctx)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if p.cl.Classify(err) == NotFound {
				p.fail(err)
				return
			}
			p.c.Log.Warn("stream: listing shards failed", "stream", p.c.Name, "err", err)
			continue
		}
		p.add(shards, false)
	}
}

func (p *Poller) fail(err error) {
	select {
	case p.errs <- source.AWSProblem(err):
	default:
	}
}

// sleep waits d, give or take a fifth so that shards do not poll in step,
// or until the poller closes; false when it closed. (Its jitter is not
// backoff.Jitter's [d/2, d): an idle shard is read about every MaxWait,
// as AWS reads it.)
func (p *Poller) sleep(ctx context.Context, d time.Duration) bool {
	return backoff.Sleep(ctx, d*4/5+rand.N(d*2/5+1)) == nil
}

// waitParents waits until every parent shard the poller knows is finished.
// A parent no longer listed (past retention) counts as finished.
func (p *Poller) waitParents(ctx context.Context, sh *shard) bool {
	for _, id := range sh.parents {
		p.mu.Lock()
		par := p.shards[id]
		p.mu.Unlock()
		if par == nil {
			continue
		}
		select {
		case <-par.finished:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// start returns where a shard's iterator starts: after the last record
// read (after), else after the checkpoint, else at its beginning for a
// shard that appeared after the poller started or whose parent has a
// checkpoint, else at the starting position. ended is true for a shard
// checkpointed at ShardEnd.
func (p *Poller) start(ctx context.Context, sh *shard, after string) (pos Position, ended bool, err error) {
	if after == "" {
		cp, ok, err := p.c.Positions.Position(ctx, p.c.Mapping, sh.id)
		if err != nil {
			return Position{}, false, fmt.Errorf("stream: checkpoint of %s: %w", sh.id, err)
		}
		if ok && cp == ShardEnd {
			return Position{}, true, nil
		}
		if pos, isMarker := parseMarker(cp); ok && isMarker {
			return pos, false, nil // a replay's rewind (Rewind)
		}
		if ok {
			after = cp
		}
	}
	switch {
	case after != "":
		return Position{Type: AfterSequenceNumber, Seq: after}, false, nil
	case sh.fromStart:
		return Position{Type: TrimHorizon}, false, nil
	case p.c.StartingPosition == AtTimestamp:
		return Position{Type: AtTimestamp, Timestamp: p.c.Timestamp}, false, nil
	default:
		return Position{Type: p.c.StartingPosition}, false, nil
	}
}

// iterator returns a shard iterator (see start); a position past the
// retention is replaced by TRIM_HORIZON.
func (p *Poller) iterator(ctx context.Context, sh *shard, after string) (string, bool, error) {
	pos, ended, err := p.start(ctx, sh, after)
	if ended || err != nil {
		return "", ended, err
	}
	if !p.acquire(ctx) {
		return "", false, ctx.Err()
	}
	defer p.release()
	it, err := p.cl.Iterator(ctx, sh.id, pos)
	if err != nil && pos.Type != TrimHorizon && p.cl.Classify(err) == Trimmed {
		p.c.Log.Warn("stream: position is past the retention; reading from TRIM_HORIZON (records were lost)",
			"stream", p.c.Name, "shard", sh.id, "position", pos.Seq, "err", err)
		it, err = p.cl.Iterator(ctx, sh.id, Position{Type: TrimHorizon})
	}
	return it, false, err
}

// acquire takes a call slot; false when the poller closed.
func (p *Poller) acquire(ctx context.Context) bool {
	select {
	case p.calls <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Poller) release() { <-p.calls }

// readPage is one Read in a call slot (a pushing source's without).
func (p *Poller) readPage(ctx context.Context, sh *shard, iter string, limit int) (Page, error) {
	if p.push {
		return p.cl.Read(ctx, sh.id, iter, limit)
	}
	if !p.acquire(ctx) {
		return Page{}, ctx.Err()
	}
	defer p.release()
	return p.cl.Read(ctx, sh.id, iter, limit)
}

// read is the reader of one shard.
func (p *Poller) read(sh *shard) {
	defer p.wg.Done()
	defer close(sh.stopped)
	ctx := sh.ctx
	// With leases, a reader starts only once the shard's parents are done
	// (ready).
	if p.c.Leases == nil && !p.waitParents(ctx, sh) {
		return
	}
	p.reading.Add(1)
	defer p.reading.Add(-1)
	var (
		iter     string
		lastRead string
		// The wait after an empty read or a failed call: EmptyWait,
		// doubling up to MaxWait; a read with records resets it.
		wait = backoff.New(p.c.EmptyWait, p.c.MaxWait)
	)
	for ctx.Err() == nil {
		if iter == "" {
			it, ended, err := p.iterator(ctx, sh, lastRead)
			if ended {
				p.finish(sh, false)
				return
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				switch p.cl.Classify(err) {
				case NotFound:
					p.fail(fmt.Errorf("stream %s: shard %s: %w", p.c.Name, sh.id, err))
					return
				case Throttled:
				default:
					p.c.Log.Warn("stream: GetShardIterator failed", "stream", p.c.Name, "shard", sh.id, "err", err)
				}
				if !p.sleep(ctx, wait.Next()) {
					return
				}
				continue
			}
			iter = it
		}
		// Stop reading while too many records are not done.
		p.mu.Lock()
		room := p.room
		p.mu.Unlock()
		limit := p.readLimit(sh)
		if limit == 0 {
			select {
			case <-room:
			case <-ctx.Done():
				return
			}
			continue
		}
		page, err := p.readPage(ctx, sh, iter, limit)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			switch p.cl.Classify(err) {
			case Throttled:
			case Expired:
				iter = ""
			default:
				// Invalid iterators (kinesis-mock answers one with a 500),
				// trimmed data, anything else: renew after the last record
				// read.
				iter = ""
				p.c.Log.Warn("stream: GetRecords failed", "stream", p.c.Name, "shard", sh.id, "err", err)
			}
			if !p.sleep(ctx, wait.Next()) {
				return
			}
			continue
		}
		p.observe(sh, &page)
		if len(page.Records) > 0 {
			recs := page.Records
			size := 0
			for i := range recs {
				recs[i].Lane = sh.id
				recs[i].Meta = sh
				n := recs[i].Len()
				size += n
				p.tracker.AddSized(sh.id, recs[i].Seq, n)
			}
			sh.mean = max(1, size/len(recs))
			lastRead = recs[len(recs)-1].Seq
			select {
			case p.out <- recs:
			case <-ctx.Done():
				return
			}
			wait.Reset()
		}
		if page.Next == "" {
			// The shard is closed (split or merge): after its last page,
			// an end marker tells Poll the lane ended (source.LaneEnder).
			select {
			case p.out <- []source.Record{{Lane: sh.id, Meta: laneEnd{}}}:
			case <-ctx.Done():
				return
			}
			p.finish(sh, true)
			return
		}
		iter = page.Next
		if len(page.Records) == 0 && !p.push && !p.sleep(ctx, wait.Next()) {
			return
		}
	}
}

// readLimit returns how many records the next read of sh asks for, or 0
// while it must wait for records to be done. Never more than MaxPending
// records pending: a read asks for what is left. Nor more than the shard's
// share of MaxPendingBytes, estimated at the mean size of its last read,
// once MinPending records are pending. A read waits for a quarter of the
// room at least, in records and in bytes: one small read after each Done
// would spend the shard's read quota (five reads a second on Kinesis).
func (p *Poller) readLimit(sh *shard) int {
	pending := p.tracker.Pending(sh.id)
	left := p.c.MaxPending - pending
	if left <= 0 || pending > 0 && left < max(1, min(p.c.Limit, p.c.MaxPending)/4) {
		return 0
	}
	limit := min(p.c.Limit, left)
	mean := sh.mean
	if mean == 0 {
		mean = 1 << 10
	}
	share := p.c.MaxPendingBytes / max(1, int(p.reading.Load()))
	pendingBytes := p.tracker.PendingBytes(sh.id)
	room := share - pendingBytes
	// MinPending records are let in whatever the share, up to two full
	// payloads' bytes.
	floor := min(p.c.MinPending-pending, (2*payload.MaxPayloadSize-pendingBytes)/mean)
	if room < share/4 && floor < max(1, p.c.MinPending/4) {
		return 0
	}
	n := room / mean
	if b := p.c.BatchSize; b > 0 && n > b {
		n -= n % b
	}
	return max(1, min(limit, max(n, floor)))
}

// observe records the IteratorAge of a read.
//
// AWS's IteratorAge is the age of the last record of an event when it is
// sent (spec STR-45), so the last record's arrival counts, not how far the
// read is from the tip (MillisBehindLatest): that is used only for records
// without an arrival time. An empty read is at the tip: 0.
func (p *Poller) observe(sh *shard, page *Page) {
	var age time.Duration
	if n := len(page.Records); n > 0 {
		if a := page.Records[n-1].Arrival; !a.IsZero() {
			age = max(time.Since(a), 0)
		} else if page.BehindKnown {
			age = page.Behind
		}
	}
	sh.age.Store(int64(age))
	sh.read.Store(true)
}

// finish marks a shard read to its end (closed) and, once every record of
// it is done, stores ShardEnd and lets its children start.
func (p *Poller) finish(sh *shard, closed bool) {
	p.doneMu.Lock()
	defer p.doneMu.Unlock()
	p.finishLocked(sh, closed)
}

func (p *Poller) finishLocked(sh *shard, closed bool) {
	if closed {
		p.mu.Lock()
		sh.readDone = true
		p.mu.Unlock()
		select {
		case p.relst <- struct{}{}:
		default:
		}
		if p.tracker.Pending(sh.id) > 0 {
			return // Done finishes it
		}
		// ShardEnd supersedes a coalesced position; a write of an older
		// position in progress completes first (writeMu).
		delete(p.dirty, sh.id)
		p.writeMu.Lock()
		err := p.c.Positions.SetPosition(context.WithoutCancel(p.ctx), p.c.Mapping, sh.id, ShardEnd)
		p.writeMu.Unlock()
		if err != nil {
			p.c.Log.Warn("stream: checkpoint failed", "stream", p.c.Name, "shard", sh.id, "err", err)
			return
		}
	}
	p.tracker.Forget(sh.id)
	sh.finOnce.Do(func() { close(sh.finished) })
}

// finished reports whether a shard is finished (ShardEnd written).
func (p *Poller) finished(lane string) bool {
	p.mu.Lock()
	sh := p.shards[lane]
	p.mu.Unlock()
	if sh == nil {
		return false
	}
	select {
	case <-sh.finished:
		return true
	default:
		return false
	}
}

// laneEnd is the Meta of the end marker a shard's reader sends after the
// shard's last page: Poll drops it and reports the lane in EndedLanes.
type laneEnd struct{}

// Poll returns the next records read from any shard, or the error that
// ended the poller (a stream or shard not found). A Poll that took only the
// end of a shard returns no records, so the lane's end is seen at once.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case err := <-p.errs:
		return nil, err
	case recs := <-p.out:
		recs = p.ends(recs)
	more:
		for len(recs) < maxPoll {
			select {
			case r := <-p.out:
				recs = append(recs, p.ends(r)...)
			default:
				break more
			}
		}
		return recs, nil
	}
}

// ends takes the end marker out of a page read from p.out and notes its
// lane as ended.
func (p *Poller) ends(page []source.Record) []source.Record {
	if len(page) == 1 {
		if _, ok := page[0].Meta.(laneEnd); ok {
			p.endMu.Lock()
			p.ended = append(p.ended, page[0].Lane)
			p.endMu.Unlock()
			return nil
		}
	}
	return page
}

// EndedLanes implements source.LaneEnder: the shards read to their end
// (closed by a split or merge) whose last records a Poll has handed out.
// The batcher then invokes their buffered records without waiting for the
// window and ends their tumbling windows.
func (p *Poller) EndedLanes() []string {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	out := p.ended
	p.ended = nil
	return out
}

// Ack implements source.Poller: finished records move their shard's
// checkpoint (Done). Streams are ordered: the pipeline retries or discards
// failed records itself, and a failure outcome leaves them unfinished.
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	return source.AckSplit(ctx, recs, outcome, p.Done, nil)
}

// Done checkpoints each shard at its last record such that it and every
// record before it are done, and finishes shards read to their end. With
// a CheckpointInterval the positions are written by the writer, later;
// without one Done returns once they are stored, in one write with those
// of the Dones of other shards that came meanwhile (group commit: one
// fsync for all of them rather than one each, in turn).
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	p.doneMu.Lock()
	var lanes []string
	for i := range recs {
		if _, ok := recs[i].Meta.(*shard); !ok {
			continue
		}
		lane := recs[i].Lane
		if cp, ok := p.tracker.Done(lane, recs[i].Seq); ok {
			if !slices.Contains(lanes, lane) {
				lanes = append(lanes, lane)
			}
			p.dirty[lane] = cp
		}
	}
	if len(lanes) == 0 {
		p.doneMu.Unlock()
		return nil
	}
	p.seq++
	seq := p.seq
	for _, lane := range lanes {
		p.mu.Lock()
		sh := p.shards[lane]
		end := sh != nil && sh.readDone
		p.mu.Unlock()
		if end && p.tracker.Pending(lane) == 0 {
			// ShardEnd is written at once and supersedes the position.
			p.finishLocked(sh, true)
		}
	}
	p.doneMu.Unlock()
	var err error
	if p.c.CheckpointInterval > 0 {
		select {
		case p.flush <- struct{}{}:
		default:
		}
	} else {
		err = p.store(seq)
	}
	p.mu.Lock()
	close(p.room)
	p.room = make(chan struct{})
	p.mu.Unlock()
	return err
}

// store returns once the positions of the Done numbered seq are stored:
// by an earlier caller's write that took them, or by its own write of
// every position noted so far.
func (p *Poller) store(seq uint64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if p.stored >= seq {
		return nil
	}
	upTo, err := p.writeDirty()
	if err != nil {
		return fmt.Errorf("stream: checkpoint: %w", err)
	}
	p.stored = max(p.stored, upTo)
	return nil
}

// writer writes coalesced positions, at most once per CheckpointInterval.
func (p *Poller) writer() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.flush:
		}
		_, _ = p.writeDirty() // a failed position is kept for the next write
		if !p.sleep(p.ctx, p.c.CheckpointInterval) {
			return
		}
	}
}

// writeDirty writes the coalesced positions; a failed one is kept for the
// next write unless a newer one replaced it meanwhile. It returns the seq
// of the last Done whose positions the write covered, and the write's
// error.
func (p *Poller) writeDirty() (uint64, error) {
	p.doneMu.Lock()
	upTo := p.seq
	if len(p.dirty) == 0 {
		p.doneMu.Unlock()
		return upTo, nil
	}
	batch := p.dirty
	p.dirty = map[string]string{}
	p.writeMu.Lock() // before doneMu is released: writes stay in order
	p.doneMu.Unlock()
	failed := map[string]string{}
	var errs []error
	wctx := context.WithoutCancel(p.ctx)
	if pb, ok := p.c.Positions.(PositionBatcher); ok {
		if err := pb.SetPositions(wctx, p.c.Mapping, batch); errorLost(err) {
			// The others were written; the lost ones are another
			// worker's now, and the lease loop stops them.
			p.c.Log.Info("stream: checkpoint refused", "stream", p.c.Name, "err", err)
		} else if err != nil {
			p.c.Log.Warn("stream: checkpoint failed", "stream", p.c.Name, "shards", len(batch), "err", err)
			failed = batch
			errs = append(errs, err)
		}
	} else {
		for lane, pos := range batch {
			if err := p.c.Positions.SetPosition(wctx, p.c.Mapping, lane, pos); err != nil {
				p.c.Log.Warn("stream: checkpoint failed", "stream", p.c.Name, "shard", lane, "err", err)
				failed[lane] = pos
				errs = append(errs, fmt.Errorf("%s: %w", lane, err))
			}
		}
	}
	p.writeMu.Unlock()
	if len(failed) > 0 {
		p.doneMu.Lock()
		for lane, pos := range failed {
			if _, newer := p.dirty[lane]; !newer && !p.finished(lane) {
				p.dirty[lane] = pos
			}
		}
		p.doneMu.Unlock()
	}
	return upTo, errors.Join(errs...)
}

// Close stops the readers and waits for them, then writes the coalesced
// positions. Records not done are read again from the checkpoints by the
// next poller.
func (p *Poller) Close() error {
	p.cancel()
	p.wg.Wait()
	_, _ = p.writeDirty() // logged; the records are read again from the last position stored
	if p.leases != nil {
		p.releaseAll()
	}
	return nil
}

// Lag returns the IteratorAge of each shard being read (read at least
// once, not finished), by shard id.
func (p *Poller) Lag() map[string]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]time.Duration{}
	for id, sh := range p.shards {
		select {
		case <-sh.finished:
		default:
			if !sh.read.Load() {
				continue
			}
			out[id] = time.Duration(sh.age.Load())
		}
	}
	return out
}
