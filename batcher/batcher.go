package batcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// ErrClosed is returned by Add, AddAll and Next once Close was called.
var ErrClosed = errors.New("batcher: closed")

// ErrNotInFlight is returned by Done for a batch that is not the batch in
// flight of its sub-lane: Done was already called for it, or it comes from
// another Batcher.
var ErrNotInFlight = errors.New("batcher: batch is not in flight")

// Batch is one invocation's worth of records of one (sub-)lane, or one of
// the special results described on the fields below. It holds its sub-lane
// until Done is called with it.
type Batch struct {
	// Lane is the records' lane (shard, topic-partition, queue, message
	// group); with tumbling windows it is also the event's shardId.
	Lane string
	// SubLane is the ParallelizationFactor sub-lane, SubLane(Key, factor);
	// always 0 with a factor of 1.
	SubLane int
	// Records are the batch's records in lane order. Empty for the extra
	// invocations of tumbling windows (a final invocation made after the
	// window's last records were sent, and the early termination one).
	Records []source.Record
	// Size is the exact size in bytes of the encoded event, AppendEvent's
	// output, window wrapper included. For an Oversize batch it is the size
	// the event of that record alone would have: more than the limit.
	Size int
	// Window is the tumbling-window wrapper of the event (spec 1.3): bounds,
	// the state to send, the shardId and the two flags. Nil without
	// tumbling windows. For an Oversize batch it is the wrapper the record
	// would have been sent with; such a batch is not an invocation of the
	// window and Done ignores its state.
	Window *payload.Window
	// Oversize marks a record whose event alone is larger than the payload
	// limit (6,291,456 bytes). It can never be invoked; the caller routes it
	// to failure as spec 2.3 says (on-failure destination with condition
	// MaximumPayloadSizeExceeded, DocumentDB OversizedRecordCount, a drop)
	// and then calls Done, which releases the lane so it is never stuck.
	// Records has exactly that one record. A tumbling-window extra
	// invocation whose state alone passes the limit is also marked Oversize
	// (with no records).
	Oversize bool

	kind batchKind
	env  payload.Envelope
	q    *queue
}

type batchKind uint8

const (
	kindRecords   batchKind = iota // records (or one oversize record)
	kindFinal                      // final invocation of a window, no records
	kindTerminate                  // early termination of a window (state too big)
)

// Envelope returns the envelope of the batch's event: the Batcher's with
// the batch's Window.
func (b *Batch) Envelope() payload.Envelope {
	env := b.env
	env.Window = b.Window
	return env
}

// AppendEvent appends the batch's event, exactly Size bytes, to dst.
func (b *Batch) AppendEvent(dst []byte) []byte {
	env := b.Envelope()
	if recs := b.Records; !env.Grouped || oneGroup(recs) {
		// The common case (a Kafka lane is one partition): records in
		// order, no Builder to fill.
		group := ""
		if len(recs) > 0 {
			group = recs[0].Group
		}
		return env.AppendFunc(dst, group, len(recs), func(dst []byte, i int) []byte { return recs[i].AppendTo(dst) })
	}
	bl := payload.NewBuilder(env)
	for i := range b.Records {
		b.Records[i].AddTo(bl)
	}
	return bl.AppendTo(dst)
}

// oneGroup reports whether every record has the first one's Group.
func oneGroup(recs []source.Record) bool {
	for i := 1; i < len(recs); i++ {
		if recs[i].Group != recs[0].Group {
			return false
		}
	}
	return true
}

// Batcher batches the records of one event source mapping, lane by lane.
//
// Rules, in the order they are checked for a (sub-)lane that has no batch in
// flight:
//
//  1. A tumbling-window extra invocation that is due (see Policy and the
//     package documentation) is released first.
//  2. A batch is released at once when it is full: BatchSize records, or
//     the next record would take the encoded event past the payload limit,
//     or (tumbling windows) the next record belongs to a later window. A
//     head record whose event alone passes the limit is released on its own
//     as an Oversize batch.
//  3. Otherwise the buffered records are released when the batching window
//     (Policy.Window, started as Policy.WindowStart says) expires.
//
// Then the (sub-)lane has a batch in flight and releases nothing until Done.
//
// All methods are safe for concurrent use. The Batcher starts no
// goroutines: Next waits in its caller's goroutine. Time is the real
// clock's unless WithClock gives another.
type Batcher struct {
	policy Policy
	pf     int
	tw     int64 // tumbling window, ns; 0 = off
	env    payload.Envelope
	cfg    config
	epoch  time.Time // origin of meta.added; monotonic, unlike UnixNano

	mu        sync.Mutex
	closed    bool
	lanes     map[string]*lane
	last      *lane // lane of the previous record: poll results come lane by lane
	ready     []*queue
	timers    []timer // min-heap by at
	wake      chan struct{}
	buffered  int
	bytes     int // encoded size of the buffered records (Record.Len)
	inflight  int
	touched   []*queue
	idle      []*queue // sub-lanes that went idle, oldest first (roughly), see sweep
	idleCount int
	deal      dealer // Policy.Lanes
}

// dealer deals records to the batcher's own lanes (Policy.Lanes).
type dealer struct {
	names []string          // lane names, made on first use
	index map[string]int    // lane name -> its index in names
	cur   int               // lane of the current run
	used  int               // records dealt to it in this run
	keys  map[string]*dealt // keys with records held, and their lane
	// A new run goes to a lane that went idle, the latest first, else to
	// a lane never used yet (next), else round robin: the lanes in use
	// follow the mapping's concurrency, not its limit (1,000 lanes of an
	// SQS mapping each kept a queue and its buffers).
	free   []int  // lanes that went idle, latest last
	isFree []bool // by lane: listed in free
	next   int    // lanes below next have been used
}

// dealt is what the dealer knows of a key while records of it are held.
type dealt struct {
	lane string
	n    int // records held: buffered or in flight
}

// startRun makes the next record start a new run when there is no
// batching window: one receive is one batch (spec SQS-1).
func (b *Batcher) startRun() {
	if b.policy.Lanes > 0 && b.policy.Window == 0 && b.deal.used > 0 {
		b.deal.used = b.policy.BatchSize
	}
}

// dealLane sets rec.Lane to the lane it is dealt to.
func (b *Batcher) dealLane(rec *source.Record) {
	d := &b.deal
	if rec.Key != "" {
		if k := d.keys[rec.Key]; k != nil {
			k.n++
			rec.Lane = k.lane
			return
		}
	}
	if d.names == nil {
		d.names = make([]string, b.policy.Lanes)
		d.index = make(map[string]int, b.policy.Lanes)
		for i := range d.names {
			d.names[i] = "lane-" + strconv.Itoa(i)
			d.index[d.names[i]] = i
		}
		d.isFree = make([]bool, b.policy.Lanes)
		d.keys = map[string]*dealt{}
		d.next = 1 // the first run is lane 0's
	}
	if d.used >= b.policy.BatchSize {
		d.cur = b.nextLane()
		d.used = 0
	}
	d.used++
	rec.Lane = d.names[d.cur]
	if rec.Key != "" {
		d.keys[rec.Key] = &dealt{lane: rec.Lane, n: 1}
	}
}

// nextLane is the lane of a new run: the latest lane that went idle and
// still is, else the first never used, else the one after the current.
func (b *Batcher) nextLane() int {
	d := &b.deal
	for len(d.free) > 0 {
		i := d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
		d.isFree[i] = false
		if b.laneIdle(d.names[i]) {
			return i
		}
	}
	if d.next < len(d.names) {
		d.next++
		return d.next - 1
	}
	return (d.cur + 1) % len(d.names)
}

// laneIdle reports whether a lane holds no record and has none in flight.
func (b *Batcher) laneIdle(name string) bool {
	l := b.lanes[name]
	if l == nil {
		return true
	}
	for _, q := range l.subs {
		if q != nil && (len(q.recs) > 0 || q.inflight != nil) {
			return false
		}
	}
	return true
}

// freed notes that a dealt lane went idle, for the next run to reuse.
func (b *Batcher) freed(name string) {
	d := &b.deal
	if i, ok := d.index[name]; ok && !d.isFree[i] {
		d.isFree[i] = true
		d.free = append(d.free, i)
	}
}

// undeal forgets the records of a finished batch in the dealer's keys.
func (b *Batcher) undeal(recs []source.Record) {
	if b.policy.Lanes == 0 {
		return
	}
	for i := range recs {
		if k := b.deal.keys[recs[i].Key]; k != nil {
			if k.n--; k.n <= 0 {
				delete(b.deal.keys, recs[i].Key)
			}
		}
	}
}

// Idle sub-lanes (nothing buffered or in flight, no open tumbling window)
// are kept, with their buffers and scan builder, so a lane that empties
// after every batch (the common case without a batching window) does not
// allocate them again for the next poll. They are forgotten after idleTTL,
// or oldest first when there are more than maxIdle, so memory follows the
// lanes in use (SQS FIFO message groups come and go).
const (
	maxIdle = 1024
	idleTTL = time.Minute
)

type lane struct {
	name     string
	subs     []*queue // by sub-lane; nil when the sub-lane holds nothing
	live     int
	buffered int
	ending   bool
}

// meta is what the batcher needs of a record besides the record itself. It
// holds no pointers, so the GC neither scans it nor needs write barriers to
// copy it.
type meta struct {
	added time.Duration // when Add saw the record, since Batcher.epoch (batching window)
	win   int64         // tumbling window start, Unix ns
}

// queue is one sub-lane.
type queue struct {
	lane *lane
	sub  int

	// recs and meta are the buffered records, windows into recBase and
	// metaBase. A batch copies its records out and the queue clears their
	// slots, so the queue never pins the Data of records it handed out and a
	// batch owns its Records outright.
	recs     []source.Record
	meta     []meta
	recBase  []source.Record
	metaBase []meta
	inflight *Batch
	lastDone time.Time

	// The scan measures the head batch incrementally: the first scanN
	// records are in scan, and scanFull says the batch cannot grow.
	scan      *payload.Builder
	scanN     int
	scanFull  bool
	scanValid bool

	cur    *twin // open tumbling window
	maxWin int64 // latest window start seen, so windows never go back

	queued   bool
	deadline time.Time
	touched  bool
	removed  bool
	idle     bool // nothing buffered or in flight, no open window
	inIdle   bool // listed in Batcher.idle
	idleAt   time.Time
}

// twin is the open tumbling window of a sub-lane.
type twin struct {
	start     int64
	state     json.RawMessage
	terminate bool // the returned state passed the limit: end it early
}

type timer struct {
	at time.Time
	q  *queue
}

// New returns a Batcher for one mapping. env is the envelope of the
// mapping's events (kind, ARN, bootstrap servers); its Window is ignored, the
// Batcher sets it per batch.
func New(policy Policy, env payload.Envelope, opts ...Option) (*Batcher, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	cfg := config{maxPayload: payload.MaxPayloadSize, maxState: 1 << 20, windowGrace: 2 * time.Minute, set: map[string]bool{}}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	cfg.set = nil
	if policy.TumblingWindow > 0 && !env.Windows {
		return nil, fmt.Errorf("batcher: tumbling windows need an envelope with window fields")
	}
	pf := max(policy.ParallelizationFactor, 1)
	policy.ParallelizationFactor = pf
	env.Window = nil
	epoch := time.Now()
	if cfg.clock != nil {
		epoch = cfg.clock.Now()
	}
	return &Batcher{
		policy: policy,
		pf:     pf,
		tw:     int64(policy.TumblingWindow),
		env:    env,
		cfg:    cfg,
		epoch:  epoch,
		lanes:  map[string]*lane{},
	}, nil
}

// SubLane returns the ParallelizationFactor sub-lane of a partition key:
// FNV-1a (32 bit) of the key modulo factor. It is stable across processes
// and versions, so records with one key always share a sub-lane and keep
// their order.
func SubLane(key string, factor int) int {
	if factor <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(factor))
}

// Add buffers one record. See AddAll.
func (b *Batcher) Add(rec source.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	now := b.now()
	b.startRun()
	b.add(&rec, now)
	b.settle(now)
	return nil
}

// AddAll buffers records in order, as one step: a Next waiting in another
// goroutine never sees half of them, so a poll result becomes one batch when
// it fits. The Batcher copies the Record values but not their Data (nor
// Meta): the caller must not modify Data afterwards. Batch.Records is a
// fresh slice the batch owns.
//
// Add never blocks and buffers without limit; pollers apply backpressure
// with Buffered.
func (b *Batcher) AddAll(recs []source.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	now := b.now()
	b.startRun()
	for i := range recs {
		b.add(&recs[i], now)
	}
	b.settle(now)
	return nil
}

func (b *Batcher) add(rec *source.Record, now time.Time) {
	if b.policy.Lanes > 0 {
		b.dealLane(rec)
	}
	l := b.last
	if l == nil || l.name != rec.Lane {
		l = b.lanes[rec.Lane]
		if l == nil {
			l = &lane{name: rec.Lane, subs: make([]*queue, b.pf)}
			b.lanes[rec.Lane] = l
		}
		b.last = l
	}
	sub := 0
	if b.pf > 1 {
		sub = SubLane(rec.Key, b.pf)
	}
	q := l.subs[sub]
	if q == nil {
		q = &queue{lane: l, sub: sub}
		l.subs[sub] = q
		l.live++
	}
	if q.idle {
		q.idle = false
		b.idleCount--
	}
	m := meta{added: now.Sub(b.epoch)}
	if b.tw > 0 {
		// Windows come from the stream's arrival timestamp (spec STR-31),
		// aligned on the Unix epoch like AWS's examples (07:04:00-07:06:00
		// for 120 s). A record stamped earlier than the lane's latest window
		// joins that window: windows of a lane only move forward, so a
		// closed window is never reopened by clock skew.
		t := rec.Arrival
		if t.IsZero() {
			t = now
		}
		ns := t.UnixNano()
		m.win = ns - mod(ns, b.tw)
		if m.win < q.maxWin && q.maxWin != 0 {
			m.win = q.maxWin
		}
		q.maxWin = m.win
	}
	if len(q.recs) == cap(q.recs) {
		q.grow(min(b.policy.BatchSize, 256))
	}
	q.recs = append(q.recs, *rec)
	q.meta = append(q.meta, m)
	l.buffered++
	b.buffered++
	b.bytes += rec.Len()
	if !q.touched {
		q.touched = true
		b.touched = append(b.touched, q)
	}
}

// grow makes room for one more record: it slides the buffered records to
// the front of the base arrays when at least half of them is free, else
// doubles them (to at least minCap, so a poll result costs one allocation
// rather than a doubling series).
func (q *queue) grow(minCap int) {
	n := len(q.recs)
	if c := cap(q.recBase); c > 0 && n <= c/2 {
		copy(q.recBase, q.recs)
		copy(q.metaBase, q.meta)
		clear(q.recBase[n:]) // the old slots of the moved records
		q.recs, q.meta = q.recBase[:n], q.metaBase[:n]
		return
	}
	c := max(2*cap(q.recBase), minCap, 8)
	recs, ms := make([]source.Record, c), make([]meta, c)
	copy(recs, q.recs)
	copy(ms, q.meta)
	q.recBase, q.metaBase = recs, ms
	q.recs, q.meta = recs[:n], ms[:n]
}

// pop drops the first n buffered records (copied out by take).
func (q *queue) pop(n int) {
	clear(q.recs[:n])
	q.recs, q.meta = q.recs[n:], q.meta[n:]
	if len(q.recs) == 0 {
		q.recs, q.meta = q.recBase[:0], q.metaBase[:0]
	}
}

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

// settle re-evaluates the queues Add touched and wakes waiting Nexts.
func (b *Batcher) settle(now time.Time) {
	for i, q := range b.touched {
		q.touched = false
		b.evaluate(q, now)
		b.touched[i] = nil
	}
	b.touched = b.touched[:0]
	b.broadcast()
}

// broadcast wakes every Next waiting for a change. The channel exists only
// while someone waits, so the common path allocates nothing.
func (b *Batcher) broadcast() {
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// evaluate puts q on the ready list or schedules its next deadline.
func (b *Batcher) evaluate(q *queue, now time.Time) {
	if q.removed || q.queued {
		return
	}
	ok, at := b.status(q, now)
	if ok {
		q.queued = true
		b.ready = append(b.ready, q)
		return
	}
	if !at.IsZero() && !at.Equal(q.deadline) {
		q.deadline = at
		b.pushTimer(timer{at: at, q: q})
	}
}

// status says whether q can release a batch now, and if not, when it will
// (zero: only when something else happens: Add, Done, EndLane).
func (b *Batcher) status(q *queue, now time.Time) (bool, time.Time) {
	if q.inflight != nil {
		return false, time.Time{}
	}
	ending := q.lane.ending
	if c := q.cur; c != nil {
		if c.terminate {
			return true, time.Time{}
		}
		if len(q.recs) == 0 {
			if ending {
				return true, time.Time{}
			}
			at := time.Unix(0, c.start+b.tw).Add(b.cfg.windowGrace)
			return !now.Before(at), at
		}
		if q.meta[0].win > c.start {
			return true, time.Time{}
		}
	}
	if len(q.recs) == 0 {
		return false, time.Time{}
	}
	b.advance(q)
	if q.scanFull || ending {
		return true, time.Time{}
	}
	at := b.epoch.Add(q.meta[0].added)
	if b.policy.WindowStart == AfterInvoke && q.lastDone.After(at) {
		at = q.lastDone
	}
	at = at.Add(max(b.policy.Window, b.policy.Linger))
	return !now.Before(at), at
}

// advance measures more of q's head batch. It only runs while q has no
// batch in flight, because with tumbling windows the state the next batch
// carries (and so its size) is known only at Done.
func (b *Batcher) advance(q *queue) {
	if q.inflight != nil || q.scanFull {
		return
	}
	if !q.scanValid {
		env := b.scanEnv(q)
		if q.scan == nil {
			q.scan = payload.NewBuilder(env)
		} else {
			q.scan.Reset(env)
		}
		q.scanN = 0
		q.scanValid = true
	}
	limit := b.cfg.maxPayload
	for q.scanN < len(q.recs) {
		if q.scanN == b.policy.BatchSize {
			q.scanFull = true
			return
		}
		if b.tw > 0 && q.meta[q.scanN].win != q.meta[0].win {
			q.scanFull = true // a window's batch never holds the next window's records
			return
		}
		r := &q.recs[q.scanN]
		if q.scan.SizeWith(r.Group, r.Len()) > limit {
			q.scanFull = true // scanN == 0: an oversize record
			return
		}
		r.AddTo(q.scan)
		q.scanN++
	}
	if q.scanN == b.policy.BatchSize {
		q.scanFull = true
	}
}

// scanEnv is the envelope the head batch is measured with. With tumbling
// windows both flags are measured as false, the longer spelling, so a batch
// that turns out to be a window's final one may be cut one byte early.
func (b *Batcher) scanEnv(q *queue) payload.Envelope {
	env := b.env
	if b.tw > 0 && len(q.recs) > 0 {
		start := q.meta[0].win
		var state json.RawMessage
		if q.cur != nil && q.cur.start == start {
			state = q.cur.state
		}
		env.Window = b.window(q, start, state, false, false)
	}
	return env
}

func (b *Batcher) window(q *queue, start int64, state json.RawMessage, final, early bool) *payload.Window {
	return &payload.Window{
		Start:                   time.Unix(0, start).UTC(),
		End:                     time.Unix(0, start+b.tw).UTC(),
		State:                   state,
		ShardID:                 q.lane.name,
		IsFinalInvokeForWindow:  final,
		IsWindowTerminatedEarly: early,
	}
}

// Next returns the next batch that is ready by the rules on Batcher, waiting
// until one is or ctx is done. Ready (sub-)lanes are served in the order
// they became ready, so a busy lane does not starve the others.
//
// Errors: ErrClosed after Close; ctx's error (wrapped) when ctx is done.
func (b *Batcher) Next(ctx context.Context) (*Batch, error) {
	var t Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("batcher: next: %w", context.Cause(ctx))
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		now := b.now()
		if bt := b.poll(now); bt != nil {
			b.mu.Unlock()
			return bt, nil
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		at, ok := b.peekTimer()
		b.mu.Unlock()

		var tc <-chan time.Time
		if ok {
			if t == nil {
				t = b.newTimer(at.Sub(now))
			} else {
				t.Reset(at.Sub(now))
			}
			tc = t.C()
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-tc:
		}
	}
}

// poll returns a ready batch or nil. b.mu is held.
func (b *Batcher) poll(now time.Time) *Batch {
	b.fire(now)
	if q := b.popReady(now); q != nil {
		return b.take(q, now)
	}
	return nil
}

// fire moves the queues whose deadline passed to the ready list.
func (b *Batcher) fire(now time.Time) {
	for len(b.timers) > 0 && !b.timers[0].at.After(now) {
		e := b.popTimer()
		if e.q.removed || !e.q.deadline.Equal(e.at) {
			continue // superseded
		}
		e.q.deadline = time.Time{}
		b.evaluate(e.q, now)
	}
}

func (b *Batcher) popReady(now time.Time) *queue {
	for len(b.ready) > 0 {
		q := b.ready[0]
		b.ready[0] = nil
		b.ready = b.ready[1:]
		if q.removed || !q.queued {
			continue
		}
		q.queued = false
		// Readiness only grows while a queue waits here (records are only
		// added, nothing else takes from it), but check rather than assume.
		if ok, _ := b.status(q, now); !ok {
			b.evaluate(q, now)
			continue
		}
		return q
	}
	return nil
}

// take cuts q's ready batch and marks it in flight.
func (b *Batcher) take(q *queue, now time.Time) *Batch {
	bt := &Batch{Lane: q.lane.name, SubLane: q.sub, env: b.env, q: q}
	if c := q.cur; c != nil && (c.terminate || len(q.recs) == 0 || q.meta[0].win > c.start) {
		// An invocation without records. Early termination (state too big)
		// is final for the state the function built: it gets both flags,
		// and the window goes on with a fresh state. A final invocation
		// after the window's last records were sent is early only when the
		// lane ended (EndLane: the shard closed) before the window's end.
		if c.terminate {
			bt.kind = kindTerminate
			bt.Window = b.window(q, c.start, c.state, true, true)
		} else {
			bt.kind = kindFinal
			early := q.lane.ending && now.Before(time.Unix(0, c.start+b.tw))
			bt.Window = b.window(q, c.start, c.state, true, early)
		}
		env := bt.Envelope()
		bt.Size = env.Overhead()
		bt.Oversize = bt.Size > b.cfg.maxPayload
		q.scanValid, q.scanFull, q.scanN = false, false, 0 // the state changes at Done
		q.inflight = bt
		b.inflight++
		return bt
	}
	b.advance(q)
	n := q.scanN
	if n == 0 {
		r := &q.recs[0]
		bt.Oversize = true
		bt.Size = q.scan.SizeWith(r.Group, r.Len())
		if b.tw > 0 {
			// The wrapper it was measured with, so AppendEvent gives the
			// event Size counts (an S3 on-failure record carries it). It is
			// not an invocation of the window: cur is left as it is.
			bt.Window = b.scanEnv(q).Window
		}
		n = 1
	} else {
		bt.Size = q.scan.Size()
		if b.tw > 0 {
			if q.cur == nil {
				q.cur = &twin{start: q.meta[0].win}
			}
			c := q.cur
			end := time.Unix(0, c.start+b.tw)
			// Final when the lane already holds the next window's records,
			// or when nothing of this window is left and the window is over
			// (grace passed, or the lane ended).
			final := n < len(q.recs) && q.meta[n].win > c.start ||
				n == len(q.recs) && (q.lane.ending || !now.Before(end.Add(b.cfg.windowGrace)))
			early := final && q.lane.ending && now.Before(end)
			bt.Window = b.window(q, c.start, c.state, final, early)
			// The batch was measured with "false" for both flags.
			if final {
				bt.Size--
			}
			if early {
				bt.Size--
			}
		}
	}
	bt.Records = make([]source.Record, n)
	copy(bt.Records, q.recs)
	for i := range bt.Records {
		b.bytes -= bt.Records[i].Len()
	}
	q.pop(n)
	// The scan builder references the records' Data: drop it now rather
	// than at the next scan, which may be a window grace away.
	q.scan.Reset(b.env)
	q.lane.buffered -= n
	b.buffered -= n
	q.scanValid, q.scanFull, q.scanN = false, false, 0
	q.inflight = bt
	b.inflight++
	return bt
}

// Done reports that the caller finished with bt (invoked successfully,
// retried until discarded, routed to failure) and releases its sub-lane for
// the next batch. With the AfterInvoke window start, the lane's next
// batching window starts now.
//
// state is the tumbling-window state the function returned for bt (the
// "state" of its response), carried to the next invocation of the window on
// this sub-lane; Done copies it. Nil keeps the state bt was sent with (for
// example when bt was discarded). A state longer than the window state limit
// (1 MB) ends the window early: the next invocation of the sub-lane carries
// that state, no records, isFinalInvokeForWindow and isWindowTerminatedEarly,
// and the window then goes on with a fresh state. After a final invocation
// the state is dropped. state is ignored without tumbling windows.
//
// Done may be called after Close. It returns ErrNotInFlight when bt is not
// the sub-lane's batch in flight.
func (b *Batcher) Done(bt *Batch, state json.RawMessage) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.done(bt, state); err != nil {
		return err
	}
	b.broadcast()
	return nil
}

// DoneNext is Done followed by what Next would return at once: the next
// ready batch, for the caller to invoke without a hand-over to the
// goroutine waiting in Next (nil when none is ready, or after Close).
// Next's waiters are woken only when something is left for them: more
// ready batches, none taken, or an earlier deadline.
func (b *Batcher) DoneNext(bt *Batch, state json.RawMessage) (*Batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	before, _ := b.peekTimer()
	if err := b.done(bt, state); err != nil {
		return nil, err
	}
	var next *Batch
	if !b.closed {
		next = b.poll(b.now())
	}
	if after, _ := b.peekTimer(); next == nil || len(b.ready) > 0 || !after.Equal(before) {
		b.broadcast()
	}
	return next, nil
}

// done releases bt's sub-lane (Done without the broadcast). b.mu is held.
func (b *Batcher) done(bt *Batch, state json.RawMessage) error {
	q := bt.q
	if q == nil || q.inflight != bt {
		return ErrNotInFlight
	}
	q.inflight = nil
	b.inflight--
	b.undeal(bt.Records)
	now := b.now()
	q.lastDone = now
	if c := q.cur; c != nil && bt.Window != nil && !bt.Oversize {
		switch {
		case bt.kind == kindTerminate:
			c.state, c.terminate = nil, false
		case bt.Window.IsFinalInvokeForWindow:
			q.cur = nil
		case state != nil:
			c.state = bytes.Clone(state)
			c.terminate = len(state) > b.cfg.maxState
		}
	}
	if len(q.recs) == 0 && q.cur == nil {
		b.markIdle(q, now)
	} else {
		b.evaluate(q, now)
	}
	b.sweep(now)
	return nil
}

// markIdle notes that q has nothing to do, and forgets it at once when
// its lane ended (a closed shard never comes back).
func (b *Batcher) markIdle(q *queue, now time.Time) {
	if q.lane.ending {
		b.remove(q)
		return
	}
	if b.policy.Lanes > 0 {
		b.freed(q.lane.name)
	}
	q.idle, q.idleAt = true, now
	b.idleCount++
	if !q.inIdle {
		q.inIdle = true
		b.idle = append(b.idle, q)
	}
	// Drop what an idle queue need not keep: big buffers (a past backlog)
	// and the scan builder of large batches.
	if cap(q.recBase) > 1024 {
		q.recBase, q.metaBase, q.recs, q.meta = nil, nil, nil, nil
	}
	if b.policy.BatchSize > 1024 {
		q.scan, q.scanValid = nil, false
	}
}

// sweep forgets idle sub-lanes past idleTTL or beyond maxIdle. Each queue
// has at most one entry in b.idle; one that became busy is dropped from
// the list and added again when it next goes idle. A recently idle queue at
// the front can keep older ones behind it a little longer; that only
// delays their removal.
func (b *Batcher) sweep(now time.Time) {
	for len(b.idle) > 0 {
		q := b.idle[0]
		if q.idle && !q.removed && b.idleCount <= maxIdle && now.Sub(q.idleAt) < idleTTL {
			return
		}
		b.idle[0] = nil
		b.idle = b.idle[1:]
		q.inIdle = false
		if q.idle && !q.removed {
			b.remove(q)
		}
	}
}

// remove forgets a sub-lane, and its lane when it was the last.
func (b *Batcher) remove(q *queue) {
	if q.idle {
		q.idle = false
		b.idleCount--
	}
	q.removed = true
	l := q.lane
	l.subs[q.sub] = nil
	l.live--
	if l.live == 0 {
		delete(b.lanes, l.name)
		if b.last == l {
			b.last = nil
		}
	}
}

// EndLane says no more records will be added to lane: its shard closed
// (split or merge) or its partition was revoked. The lane's buffered
// records are released without waiting for the batching window, its open
// tumbling windows get their final invocation at once
// (isWindowTerminatedEarly when that is before the window's end; spec
// STR-30: windows do not carry across resharding), and the lane is
// forgotten once its last batch is done.
func (b *Batcher) EndLane(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.lanes[name]
	if l == nil {
		return
	}
	l.ending = true
	now := b.now()
	for _, q := range l.subs {
		switch {
		case q == nil:
		case q.idle:
			b.remove(q)
		default:
			b.evaluate(q, now)
		}
	}
	b.broadcast()
}

// Buffered returns how many records of lane are buffered and not yet in a
// batch. Pollers compare it with a limit (a few batches' worth) to stop
// fetching for a lane whose function is slow.
func (b *Batcher) Buffered(lane string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.lanes[lane]; l != nil {
		return l.buffered
	}
	return 0
}

// Lanes returns how many lanes the Batcher knows: with records buffered or
// in flight, or idle for less than a minute.
func (b *Batcher) Lanes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lanes)
}

// Len returns how many records are buffered in all lanes and not yet in a
// batch.
func (b *Batcher) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffered
}

// Size returns how many records are buffered in all lanes and not yet in a
// batch, as Len does, and their encoded size in bytes (the sum of their
// Record.Len): what a poller's read-ahead is bounded by.
func (b *Batcher) Size() (records, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffered, b.bytes
}

// Waiting reports whether a sub-lane holds a batch that waits for its
// batching window (or linger) to end: it has records, not enough for a
// full batch.
func (b *Batcher) Waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.timers {
		q := e.q
		if !q.removed && q.deadline.Equal(e.at) && !q.queued && q.inflight == nil && len(q.recs) > 0 {
			return true
		}
	}
	return false
}

// InFlight returns how many batches Next returned that are not done yet. A
// pipeline stopping softly stops adding, then waits for it to reach zero
// before it checkpoints and closes.
func (b *Batcher) InFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight
}

// Close stops the Batcher: waiting and later Next calls return ErrClosed,
// Add and AddAll return ErrClosed, and buffered records are dropped (they
// were never invoked, so the caller must not acknowledge them: a stream
// re-reads them from its checkpoint, a queue redelivers them). Batches in
// flight may still be passed to Done. Close is idempotent.
func (b *Batcher) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	b.lanes = nil
	b.last = nil
	b.ready = nil
	b.timers = nil
	b.buffered = 0
	b.bytes = 0
	b.broadcast()
}

// Abandon closes the Batcher like Close and returns the records it held
// buffered (not in a batch), lane by lane, so that the caller can hand them
// back at once (a stopping pipeline: source.ErrStopped).
func (b *Batcher) Abandon() []source.Record {
	b.mu.Lock()
	var out []source.Record
	if !b.closed {
		out = make([]source.Record, 0, b.buffered)
		for _, l := range b.lanes {
			for _, q := range l.subs {
				if q != nil {
					out = append(out, q.recs...)
				}
			}
		}
	}
	b.mu.Unlock()
	b.Close()
	return out
}

// The timer heap is a plain binary min-heap: container/heap would box each
// entry in an interface.

func (b *Batcher) pushTimer(e timer) {
	h := append(b.timers, e)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].at.Before(h[p].at) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	b.timers = h
}

func (b *Batcher) popTimer() timer {
	h := b.timers
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = timer{}
	h = h[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h[l].at.Before(h[m].at) {
			m = l
		}
		if r < n && h[r].at.Before(h[m].at) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	b.timers = h
	return top
}

// peekTimer returns the earliest live deadline, dropping superseded ones.
func (b *Batcher) peekTimer() (time.Time, bool) {
	for len(b.timers) > 0 {
		e := b.timers[0]
		if e.q.removed || !e.q.deadline.Equal(e.at) {
			b.popTimer()
			continue
		}
		return e.at, true
	}
	return time.Time{}, false
}
