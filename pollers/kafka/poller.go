package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Starting positions (the mapping's StartingPosition). They apply only to
// partitions the group has no committed offset for (spec KAF-2).
const (
	TrimHorizon = "TRIM_HORIZON"
	Latest      = "LATEST"
	AtTimestamp = "AT_TIMESTAMP"
)

// ErrClosed is returned by Poll after Close.
var ErrClosed = errors.New("kafka poller closed")

// Config configures a Poller.
type Config struct {
	// Seeds are the bootstrap servers, host:port
	// (SelfManagedEventSource KAFKA_BOOTSTRAP_SERVERS, or the MSK
	// cluster's brokers).
	Seeds []string
	// Topics to consume (the mapping's Topics: one on AWS).
	Topics []string
	// Group is the consumer group (ConsumerGroupId; AWS defaults it to the
	// mapping's UUID).
	Group string
	// StartingPosition is TRIM_HORIZON (the default), LATEST or
	// AT_TIMESTAMP with StartingTimestamp, for partitions without a
	// committed offset.
	StartingPosition  string
	StartingTimestamp time.Time
	// TLS, when not nil, is used to dial the brokers.
	TLS *tls.Config
	// SASL, when not nil, authenticates the connections.
	SASL sasl.Mechanism
	// MaxPoll caps the records one fetch takes from kgo (default 10,000).
	MaxPoll int
	// MaxOutstanding caps, per partition, the records handed to the
	// pipeline and not yet done (default 2,000; ConfigFor sets three
	// batches, or up to 1,000 records for small batches). Enough to keep
	// one batch in flight and the next ones ready; more only lengthens
	// revocations.
	MaxOutstanding int
	// MaxPollers, when positive, bounds how many partitions are consumed at
	// once, and so the concurrent invocations of this member (one batch in
	// flight per partition): ProvisionedPollerConfig.MaximumPollers
	// (rotate says why partitions). 0: no bound (on-demand mode).
	MaxPollers int
	// CommitInterval is how often a commit that failed is tried again
	// (default 500 ms). A batch's offsets are committed as soon as it is
	// done, while the partition's next batch is invoked, or with the
	// batches that finish within commitGap of it (see Done); Close and
	// revocations commit at once.
	CommitInterval time.Duration
	// RevokeTimeout bounds how long a revocation waits for the partition's
	// records in flight to finish before abandoning them (default 10 s,
	// well below the group's 60 s rebalance timeout).
	RevokeTimeout time.Duration
	// InstanceID, when set, makes the poller a static member of the group
	// (KIP-345 group.instance.id): a worker that restarts with the same id,
	// after a crash or a SIGKILL, takes its place back at once, with its
	// partitions, instead of waiting for the group to expire its session
	// (SessionTimeout) and rebalance. The id must be stable for one worker
	// and mapping and differ between workers (InstanceID). Close leaves
	// the group explicitly, so a stopped mapping hands its partitions over
	// at once too.
	InstanceID string
	// Log receives the poller's logs (default: discard).
	Log *slog.Logger
	// ClientOpts are extra kgo options, applied last (tests shorten
	// session timeouts with them).
	ClientOpts []kgo.Opt
}

// Poller reads a mapping's topics as a member of its consumer group. It
// implements source.Poller and source.LaneEnder; Kafka is an ordered
// source, so only finished records are acknowledged (Done).
//
// Records fetched by kgo are held by the poller and handed to the pipeline
// a few batches at a time per partition (Config.MaxOutstanding): records the
// pipeline has not seen can be dropped at a revocation without any
// duplicate, the pipeline never buffers much of a partition it may lose,
// and Config.MaxPollers can bound how many partitions are consumed at once.
// A partition holding many fetched records is paused in kgo (its fetch
// buffer is dropped and fetched again later from the same offset).
type Poller struct {
	cl  *kgo.Client
	cfg Config
	log *slog.Logger
	// tracker holds, per lane, the offsets handed out and not yet below
	// the commit mark (integer positions: Kafka tracks every record).
	tracker *source.Tracker
	offs    []int64 // scratch of handOut and Done, under mu

	// commitMu serializes commits: the periodic committer and a
	// revocation's final commit. Holding it across a revocation means no
	// commit for a partition is sent after the partition was handed over.
	commitMu sync.Mutex

	mu     sync.Mutex
	owned  map[string]*part // assigned partitions by lane
	order  []*part          // owned partitions in assignment order (round robin)
	rr     int              // next index of order to activate (MaxPollers)
	active int              // partitions holding a poller slot (MaxPollers)
	held   int              // records fetched and not handed out, all partitions
	wake   context.CancelFunc
	// ended are revoked partitions not yet reported by EndedLanes;
	// endNews makes the next Poll without records return at once.
	ended    []string
	endNews  bool
	progress chan struct{} // closed and replaced when a record is done or held records are dropped
	closing  bool

	stop      chan struct{}
	kick      chan struct{} // a mark moved: commit now (buffered 1: kicks coalesce)
	urgent    atomic.Bool   // a partition has uncommittedBatches/2 batches uncommitted: commit without waiting for commitGap
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// part is one assignment of a partition. A new assignment of the same
// partition is a new part: outcomes of records handed out under an earlier
// one (Record.Meta is the *part) are ignored once it is gone.
type part struct {
	topic     string
	partition int32
	lane      string
	gone      bool // revoked or lost
	revoking  bool // a revocation waits for the records handed out
	// mark is the next offset to commit (the last record done, with every
	// record before it, plus one); committed is the last one committed.
	// -1 when none.
	mark, committed int64
	// marks are the partition's last commit marks, one per Done that moved
	// it, oldest first, trimmed to those not committed yet: Done waits
	// while more than uncommittedBatches of them are.
	marks []int64
	// first is the offset of the first record fetched under this
	// assignment and highWater the partition's high watermark at the last
	// fetch, for OffsetLag; -1 when unknown.
	first, highWater int64
	// held are the records fetched and not yet handed out, in offset order.
	held   []*kgo.Record
	paused bool
	// fetched is the most records one fetch brought this partition: a
	// partition is paused only when it holds more than two fetches' worth
	// (pauseAt), so a pause never throws away, with kgo's buffer, records
	// it would soon need again.
	fetched int
	// active is set while the partition holds one of the MaxPollers slots,
	// quota is what it may still hand out in this turn.
	active bool
	quota  int
}

// pending returns how many records of pt were handed out and are not yet
// below its mark. Called with p.mu held.
func (p *Poller) pending(pt *part) int { return p.tracker.Pending(pt.lane) }

// New connects to the cluster and joins the consumer group. It checks
// the connection (and its authentication) before returning.
func New(ctx context.Context, cfg Config) (*Poller, error) {
	if len(cfg.Seeds) == 0 {
		return nil, errors.New("kafka: no bootstrap servers")
	}
	if len(cfg.Topics) == 0 {
		return nil, errors.New("kafka: no topics")
	}
	if cfg.Group == "" {
		return nil, errors.New("kafka: no consumer group")
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 10000
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = 2000
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 10 * time.Second
	}
	p := &Poller{cfg: cfg, log: cfg.Log, owned: map[string]*part{}, tracker: source.NewTracker(),
		progress: make(chan struct{}), stop: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p.log = p.log.With("group", cfg.Group)
	start, err := startOffset(cfg.StartingPosition, cfg.StartingTimestamp)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Seeds...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// Kafka's pre-3.0 default rather than today's 45 s: a member that
		// crashed (SIGKILL, OOM) holds its partitions until its session
		// expires, and a restarted esmd should resume within seconds.
		kgo.SessionTimeout(10 * time.Second),
		// A fetch in flight names only the partitions not paused when it
		// was sent; on a broker whose other partitions are drained it
		// waits out FetchMaxWait (default 5 s) before partitions resumed
		// meanwhile are fetched. Half a second bounds that stall (AWS's
		// Kafka pollers also wait at most 500 ms by default, the batching
		// window).
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ConsumeResetOffset(start),
		// Commits follow the pipeline's outcomes, never the polls.
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.lost),
		kgo.WithLogger(kgo.BasicLogger(io.Discard, kgo.LogLevelNone, nil)),
	}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	if cfg.SASL != nil {
		opts = append(opts, kgo.SASL(cfg.SASL))
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	opts = append(opts, cfg.ClientOpts...)
	p.cl, err = kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	// kgo connects lazily; a wrong address or password shows up here, as
	// Open's error, rather than as endlessly retried fetches.
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := p.cl.Ping(pctx); err != nil {
		p.cl.Close()
		return nil, connectError(fmt.Errorf("kafka: connect to %v: %w", cfg.Seeds, err))
	}
	p.kick = make(chan struct{}, 1)
	p.wg.Add(1)
	go p.commitLoop()
	return p, nil
}

func startOffset(pos string, ts time.Time) (kgo.Offset, error) {
	switch pos {
	case "", TrimHorizon:
		return kgo.NewOffset().AtStart(), nil
	case Latest:
		return kgo.NewOffset().AtEnd(), nil
	case AtTimestamp:
		if ts.IsZero() {
			return kgo.Offset{}, errors.New("kafka: AT_TIMESTAMP without a StartingPositionTimestamp")
		}
		return kgo.NewOffset().AfterMilli(ts.UnixMilli()), nil
	}
	return kgo.Offset{}, fmt.Errorf("kafka: unknown StartingPosition %q", pos)
}

// Client returns the poller's kgo client (for metrics such as lag, and for
// producing to a kafka:// OnFailure destination in the same cluster).
func (p *Poller) Client() *kgo.Client { return p.cl }

// Poll implements source.Poller: it returns the next records of the
// partitions this member owns, each partition in offset order, and never
// more than Config.MaxOutstanding unfinished records of a partition. It
// blocks while there is nothing to hand out.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	for {
		p.mu.Lock()
		out, resume := p.handOut()
		if len(out) == 0 && p.endNews {
			// A revoked partition: return once so the pipeline sees it at
			// once (EndedLanes) and invokes what it buffered of it.
			p.endNews = false
			p.mu.Unlock()
			if len(resume) > 0 {
				p.cl.ResumeFetchPartitions(resume)
			}
			return nil, nil
		}
		if len(out) == 0 && p.held > 0 && !p.starving() {
			// Every partition with room in the pipeline holds records
			// (so none has room): kgo stops fetching while it is not
			// polled (it buffers one fetch per broker), which costs
			// nothing, unlike a pause that drops what it buffered.
			ch := p.progress
			p.mu.Unlock()
			if len(resume) > 0 {
				p.cl.ResumeFetchPartitions(resume)
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-p.stop:
				return nil, ErrClosed
			}
			continue
		}
		var fctx context.Context
		cancel := context.CancelFunc(func() {})
		if len(out) == 0 {
			// Nothing to hand out: fetch, and be woken by a Done that
			// makes room for records already held.
			fctx, cancel = context.WithCancel(ctx)
			p.wake = cancel
		}
		p.mu.Unlock()
		if len(resume) > 0 {
			p.cl.ResumeFetchPartitions(resume)
		}
		if len(out) > 0 {
			return out, nil
		}
		fs := p.cl.PollRecords(fctx, p.cfg.MaxPoll)
		cancel()
		if fs.IsClientClosed() {
			return nil, ErrClosed
		}
		if err := p.fetchErrors(fs); err != nil {
			return nil, err
		}
		// Hold what kgo returned before looking at ctx: kgo has moved past
		// those records, and a Poll whose ctx ended as they came would
		// otherwise drop them for the rest of the assignment.
		if pause := p.hold(fs); len(pause) > 0 {
			p.cl.PauseFetchPartitions(pause)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// fetchErrors logs the errors of a fetch and returns the fatal one.
func (p *Poller) fetchErrors(fs kgo.Fetches) error {
	var fatal error
	fs.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if d := disabling(err); d != err {
			fatal = disabling(fmt.Errorf("kafka: %s: %w", topic, err))
			return
		}
		if errors.Is(err, kerr.FencedInstanceID) {
			// Another member joined with this member's instance id: two
			// esmd processes with one worker id (one --data-dir). Poll
			// fails, and the pipeline starts again after a backoff.
			fatal = fmt.Errorf("kafka: group %s: another member uses this worker's group instance id %s (do two esmd processes share a --data-dir?): %w",
				p.cfg.Group, p.cfg.InstanceID, err)
			return
		}
		// kgo retries other fetch errors itself; they are worth a line.
		p.log.Warn("kafka fetch", "topic", topic, "partition", partition, "err", err)
	})
	// Retrying cannot fix credentials or ACLs: the pipeline disables the
	// mapping (EVENT_SOURCE_AUTHN_ERROR / _AUTHZ_ERROR), as AWS does.
	return fatal
}

// starving reports whether a partition could take records now and holds
// none: then Poll fetches, even when the other partitions hold many (a
// fetch often brings some partitions' records and not others'; waiting
// for the full ones to drain would leave these idle). The partitions
// holding twice their share are paused, so their held records stay
// bounded. Called with p.mu held.
func (p *Poller) starving() bool {
	for _, pt := range p.order {
		if pt.revoking || pt.paused || len(pt.held) > 0 || p.pending(pt) >= p.cfg.MaxOutstanding {
			continue
		}
		if p.cfg.MaxPollers > 0 && !pt.active && p.active >= p.cfg.MaxPollers {
			continue // no slot for it: records would wait anyway
		}
		return true
	}
	return false
}

// holdShare is how many fetched records a partition may hold on average:
// Poll stops fetching when the partitions hold that many each.
func (p *Poller) holdShare() int { return max(2*p.cfg.MaxOutstanding, 2000) }

// pauseAt is how many held records pause a partition: twice its share,
// and at least two of its largest fetches. A pause drops what kgo
// buffered of the partition, decompressed and decoded already, and the
// broker sends it again on resume; pausing a partition that holds less
// than a fetch would do that for every fetch (a broker answers with up
// to FetchMaxPartitionBytes, a megabyte of compressed records, per
// partition: thousands of small records).
func (p *Poller) pauseAt(pt *part) int { return max(2*p.holdShare(), 2*pt.fetched) }

// resumeAt is how few held records resume a paused partition: its share,
// or one fetch when that is more.
func (p *Poller) resumeAt(pt *part) int { return max(p.holdShare(), pt.fetched) }

// hold keeps the records of a fetch for handOut and returns the
// partitions to pause: those holding more than pauseAt, so that one slow
// partition does not take all the room and stop the others' fetches.
func (p *Poller) hold(fs kgo.Fetches) map[string][]int32 {
	var pause map[string][]int32
	p.mu.Lock()
	defer p.mu.Unlock()
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		pt := p.owned[payload.KafkaGroup(fp.Topic, fp.Partition)]
		if pt == nil || pt.revoking || fp.Err != nil {
			// Revoked after it was fetched: the new owner reads it.
			return
		}
		pt.highWater = fp.HighWatermark
		recs := fp.Records
		if n := len(pt.held); n > 0 {
			// A fetch of an earlier assignment that raced a rebalance
			// cannot go back before what is held.
			last := pt.held[n-1].Offset
			for len(recs) > 0 && recs[0].Offset <= last {
				recs = recs[1:]
			}
		}
		if len(recs) == 0 {
			return
		}
		if pt.first < 0 {
			pt.first = recs[0].Offset
		}
		pt.fetched = max(pt.fetched, len(recs))
		pt.held = append(pt.held, recs...)
		p.held += len(recs)
		if len(pt.held) >= p.pauseAt(pt) && !pt.paused {
			pt.paused = true
			if pause == nil {
				pause = map[string][]int32{}
			}
			pause[pt.topic] = append(pause[pt.topic], pt.partition)
		}
	})
	return pause
}

// handOut takes the records the pipeline may have now: per partition up
// to MaxOutstanding unfinished ones, and with MaxPollers only from the
// partitions holding a slot. It returns them with the paused partitions
// that held few enough records to fetch again. Called with p.mu held.
func (p *Poller) handOut() ([]source.Record, map[string][]int32) {
	if p.held == 0 {
		return nil, nil
	}
	limit := p.cfg.MaxOutstanding
	take := func(pt *part) int {
		if pt.revoking || len(pt.held) == 0 {
			return 0
		}
		n := min(limit-p.pending(pt), len(pt.held))
		if p.cfg.MaxPollers > 0 {
			n = min(n, pt.quota)
		}
		return max(n, 0)
	}
	if p.cfg.MaxPollers > 0 {
		p.rotate()
	}
	count := 0
	for _, pt := range p.order {
		count += take(pt)
	}
	if count == 0 {
		return nil, nil
	}
	out := make([]source.Record, 0, count)
	var resume map[string][]int32
	for _, pt := range p.order {
		n := take(pt)
		if n == 0 {
			continue
		}
		offs := p.offs[:0]
		for _, r := range pt.held[:n] {
			// Records are encoded when their batch's event is written, in
			// the goroutine that invokes it: not here, under p.mu, one
			// record after the other.
			seq := strconv.FormatInt(r.Offset, 10)
			offs = append(offs, r.Offset)
			out = append(out, source.Record{
				Lane: pt.lane, Key: string(r.Key), ID: seq, Seq: seq, Arrival: r.Timestamp, Group: pt.lane,
				Encoder: (*encoder)(r), Size: encodedSize(r), Meta: pt,
			})
		}
		p.tracker.AddOffsets(pt.lane, offs...)
		p.offs = offs[:0]
		clear(pt.held[:n])
		pt.held = pt.held[n:]
		if len(pt.held) == 0 {
			pt.held = nil
		}
		p.held -= n
		if p.cfg.MaxPollers > 0 {
			pt.quota -= n
		}
		if pt.paused && len(pt.held) < p.resumeAt(pt) {
			pt.paused = false
			if resume == nil {
				resume = map[string][]int32{}
			}
			resume[pt.topic] = append(resume[pt.topic], pt.partition)
		}
	}
	return out, resume
}

// rotate hands the MaxPollers slots around: a partition gives its slot
// back once it has nothing unfinished and has used its turn (or has
// nothing more to read), and partitions with records take free slots in
// round-robin order, each for a turn of MaxOutstanding records.
//
// Why partitions: AWS's provisioned-mode poller reads partitions and
// invokes with at most one batch in flight per partition, and caps
// MaximumPollers at the partition count to keep per-partition order
// (spec KAF-9). esmd has one consumer per mapping and worker, so a poller
// here is a slot for one partition being consumed: MaximumPollers bounds
// the partitions with records in the pipeline, hence the concurrent
// invocations of this worker. MinimumPollers needs nothing: esmd never
// scales below the partitions that have records.
func (p *Poller) rotate() {
	for _, pt := range p.order {
		if pt.active && p.pending(pt) == 0 && (pt.quota <= 0 || len(pt.held) == 0) {
			pt.active = false
			p.active--
		}
	}
	n, start := len(p.order), p.rr
	for i := 0; i < n && p.active < p.cfg.MaxPollers; i++ {
		pt := p.order[(start+i)%n]
		if pt.active || pt.revoking || len(pt.held) == 0 {
			continue
		}
		pt.active, pt.quota = true, p.cfg.MaxOutstanding
		p.active++
		p.rr = (start + i + 1) % n
	}
}

// recordOffset is the Kafka offset of a record this poller handed out:
// its kgo record's while it still encodes itself, else its Seq (a filter
// encodes records into Data and drops the Encoder).
func recordOffset(r *source.Record) (int64, error) {
	if e, ok := r.Encoder.(*encoder); ok {
		return e.Offset, nil
	}
	return strconv.ParseInt(r.Seq, 10, 64)
}

// encoder encodes a fetched record as the element of a Kafka event
// (source.Record.Encoder). A *kgo.Record converts to it without an
// allocation; kgo never modifies a record it returned.
type encoder kgo.Record

// AppendEncoded implements payload.Encoder.
func (e *encoder) AppendEncoded(dst []byte) []byte {
	kr := kafkaRecord((*kgo.Record)(e))
	return payload.AppendKafka(dst, &kr)
}

// encodedSize is the exact length of a record's encoding.
func encodedSize(r *kgo.Record) int {
	kr := kafkaRecord(r)
	return payload.KafkaSize(&kr)
}

func kafkaRecord(r *kgo.Record) payload.KafkaRecord {
	kr := payload.KafkaRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
		TimestampType: "CREATE_TIME", Key: r.Key, Value: r.Value}
	if r.Attrs.TimestampType() == 1 {
		kr.TimestampType = "LOG_APPEND_TIME"
	}
	if kr.Value == nil {
		// A tombstone: AWS sends the value field; "" keeps the event's
		// shape fixed.
		kr.Value = []byte{}
	}
	if len(r.Headers) > 0 {
		kr.Headers = make([]payload.KafkaHeader, len(r.Headers))
		for i, h := range r.Headers {
			kr.Headers[i] = payload.KafkaHeader{Key: h.Key, Value: h.Value}
		}
	}
	return kr
}

// OffsetLag returns, per "topic-partition" this member owns, how many
// records the partition holds past the last one processed: the high
// watermark of the last fetch minus the next offset to commit (spec KAF-21,
// AWS's OffsetLag metric, here per partition). Before any record of an
// assignment is done, the next offset to commit is the first one fetched
// (where the group's committed offset or StartingPosition put the
// consumer). Partitions not fetched yet are left out.
func (p *Poller) OffsetLag() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.owned))
	for lane, pt := range p.owned {
		if pt.highWater < 0 {
			continue
		}
		pos := pt.mark
		if pos < 0 {
			pos = pt.first
		}
		if pos < 0 {
			// Fetched, nothing there: the consumer is at the end.
			pos = pt.highWater
		}
		out[lane] = max(pt.highWater-pos, 0)
	}
	return out
}

// Ack implements source.Poller: finished records move their partition's
// commit mark (Done). Kafka is an ordered source: the pipeline retries or
// discards failed records itself, and a failure outcome leaves them
// uncommitted.
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	return source.AckSplit(ctx, recs, outcome, p.Done, nil)
}

// Done is half of Ack (source.Poller): the partition's commit mark moves to
// just after the last record such that it and every record before it are
// done, and the committer commits it while the pipeline invokes the
// partition's next batch: at once, or, while batches finish less than
// commitGap apart, commitGap after the last commit, so that one
// OffsetCommit carries every mark that moved meanwhile (a commit cost esmd
// and the broker about 200 us together, 30 to 40 records' work). Done
// returns once a partition has at most uncommittedBatches finished batches
// waiting for their commit (the committer does not wait out the gap once
// one has half that many), so a crash (SIGKILL, OOM) redelivers at most
// MaxRedeliveredBatches per partition. A failed commit is logged and
// retried every CommitInterval; a Done waits for it at most commitWait.
// Records of an assignment that is gone (revoked, lost) are ignored: the
// new owner reads them again.
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	moved, prev, err := p.markDone(recs)
	if !moved {
		return err
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	if len(prev) == 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitWait)
	defer cancel()
	if werr := p.waitCommitted(wctx, prev); werr != nil {
		p.log.Warn("kafka commit: the partition's previous batch is not committed yet; going on", "err", werr)
	}
	return err
}

// commitWait bounds how long Done waits for a partition's previous batch
// to be committed (a commit failing over and over).
const commitWait = 10 * time.Second

// uncommittedBatches is how many finished batches of a partition may wait
// for their commit: Done waits beyond that.
const uncommittedBatches = 8

// MaxRedeliveredBatches is the most batches of one partition a crash
// redelivers: those finished and not yet committed, and the one in flight.
const MaxRedeliveredBatches = uncommittedBatches + 1

// commitGap is the least time between two commits while batches finish
// faster than that: one OffsetCommit then carries several batches of
// every partition. A commit per finished batch cost, in esmd and in the
// broker, about 0.5 us of the 6.5 us of CPU a record took in all (esmd
// bench, Kafka, BatchSize 100: 750 commits a second; about 180 with the
// gap). When batches finish further apart, each is committed at once.
const commitGap = 20 * time.Millisecond

// prevMark is a partition's commit mark before a Done moved it.
type prevMark struct {
	pt   *part
	mark int64
}

// waitCommitted waits until every partition of prev has committed at least
// its previous mark, or is gone.
func (p *Poller) waitCommitted(ctx context.Context, prev []prevMark) error {
	for {
		p.mu.Lock()
		ch, waiting := p.progress, false
		for _, pm := range prev {
			if !pm.pt.gone && pm.pt.committed < pm.mark {
				waiting = true
				break
			}
		}
		p.mu.Unlock()
		if !waiting {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// markDone moves the commit marks of the partitions of recs, reports
// whether one moved, and returns, for the partitions that would otherwise
// hold more than uncommittedBatches finished batches uncommitted, the mark
// that must be committed first.
func (p *Poller) markDone(recs []source.Record) (bool, []prevMark, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The records of a batch are one partition's: they go to the tracker
	// in one call per run of records of one part.
	var (
		cur   *part
		offs  = p.offs[:0]
		moved bool
		prev  []prevMark
		err   error
	)
	flush := func() {
		if len(offs) == 0 {
			return
		}
		if last, ok := p.tracker.DoneOffsets(cur.lane, offs...); ok {
			cur.mark = last + 1
			cur.marks = append(cur.marks, cur.mark)
			for len(cur.marks) > 0 && cur.marks[0] <= cur.committed {
				cur.marks = cur.marks[1:]
			}
			n := len(cur.marks)
			if n >= uncommittedBatches/2 {
				p.urgent.Store(true)
			}
			if n > uncommittedBatches {
				prev = append(prev, prevMark{cur, cur.marks[n-1-uncommittedBatches]})
			}
			moved = true
		}
		offs = offs[:0]
	}
	for i := range recs {
		pt, _ := recs[i].Meta.(*part)
		if pt == nil || pt.gone {
			continue
		}
		off, perr := recordOffset(&recs[i])
		if perr != nil {
			err = fmt.Errorf("kafka: offset %q of %s: %w", recs[i].Seq, recs[i].Lane, perr)
			break
		}
		if pt != cur {
			flush()
			cur = pt
		}
		offs = append(offs, off)
	}
	flush()
	p.offs = offs
	if moved {
		p.signal()
		if p.held > 0 && p.wake != nil {
			// Room for held records: stop waiting for a fetch.
			p.wake()
			p.wake = nil
		}
	}
	return moved, prev, err
}

// Close commits what is finished, leaves the group and closes the client.
// Unfinished records are read again by the next owner of their partition.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		close(p.stop)
		p.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p.closeErr = p.commit(ctx, nil)
		cancel()
		if p.cfg.InstanceID != "" {
			p.leaveStatic()
		}
		// Leaving the group revokes everything; revoked sees closing and
		// does not wait for records that will never finish.
		p.cl.Close()
	})
	return p.closeErr
}

// leaveStatic leaves the group as a static member, which kgo does not do
// on Close (it expects the member to come back): a mapping that stops
// (disabled, updated, deleted, esmd shut down) hands its partitions over
// at once rather than after the session timeout. It stops the group
// management first (revoking everything, so no commit can follow), then
// sends the LeaveGroup that names the instance.
func (p *Poller) leaveStatic() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	member, _ := p.cl.GroupMetadata()
	if err := p.cl.LeaveGroupContext(ctx); err != nil {
		p.log.Warn("kafka: leave the group", "err", err)
		return
	}
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = p.cfg.Group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID, lm.InstanceID = member, &p.cfg.InstanceID
	req.Members = append(req.Members, lm)
	resp, err := req.RequestWith(ctx, p.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, m := range resp.Members {
			if err == nil {
				err = kerr.ErrorForCode(m.ErrorCode)
			}
		}
	}
	if err != nil {
		// The group expires the member after its session timeout.
		p.log.Warn("kafka: leave the group as a static member", "instance", p.cfg.InstanceID, "err", err)
	}
}

func (p *Poller) commitLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.CommitInterval)
	defer t.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	var last time.Time
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
			// Batches finishing close together share a commit: wait out
			// commitGap since the last one, unless a partition has half
			// its uncommitted batches waiting (then its Done would soon
			// wait for a commit).
			for wait := commitGap - time.Since(last); wait > 0 && !p.urgent.Load(); wait = commitGap - time.Since(last) {
				gap.Reset(wait)
				select {
				case <-p.stop:
					return
				case <-p.kick:
				case <-gap.C:
				}
			}
		case <-t.C:
		}
		last = time.Now()
		p.urgent.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.commit(ctx, nil); err != nil {
			p.log.Warn("kafka commit", "err", err)
		}
		cancel()
	}
}

// commit commits the marks that moved, of every owned partition, or only
// of lanes when not nil (a revocation's final commit).
func (p *Poller) commit(ctx context.Context, lanes []string) error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	return p.commitLocked(ctx, lanes)
}

func (p *Poller) commitLocked(ctx context.Context, lanes []string) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	type sent struct {
		pt   *part
		mark int64
	}
	var parts []sent
	p.mu.Lock()
	add := func(pt *part) {
		if pt == nil || pt.mark < 0 || pt.mark == pt.committed {
			return
		}
		if offsets[pt.topic] == nil {
			offsets[pt.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[pt.topic][pt.partition] = kgo.EpochOffset{Epoch: -1, Offset: pt.mark}
		parts = append(parts, sent{pt, pt.mark})
	}
	if lanes == nil {
		for _, pt := range p.owned {
			add(pt)
		}
	} else {
		for _, l := range lanes {
			add(p.owned[l])
		}
	}
	p.mu.Unlock()
	if len(parts) == 0 {
		return nil
	}
	var cerr error
	p.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		cerr = commitRespErr(resp)
	})
	if cerr != nil {
		return fmt.Errorf("commit offsets: %w", cerr)
	}
	p.mu.Lock()
	for _, s := range parts {
		s.pt.committed = s.mark
	}
	p.signal() // Dones wait for their partition's previous mark
	p.mu.Unlock()
	return nil
}

// assigned is kgo's OnPartitionsAssigned: each partition gets a new part.
// It runs before any record of the new assignment is fetched.
func (p *Poller) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, parts := range m {
		for _, n := range parts {
			lane := payload.KafkaGroup(topic, n)
			if old := p.owned[lane]; old != nil {
				p.forget(old)
			}
			pt := &part{topic: topic, partition: n, lane: lane, mark: -1, committed: -1, first: -1, highWater: -1}
			p.owned[lane] = pt
			p.order = append(p.order, pt)
		}
	}
	p.log.Debug("kafka partitions assigned", "partitions", m)
}

// revoked is kgo's OnPartitionsRevoked (a cooperative rebalance moves the
// partitions elsewhere, or the member leaves). The records fetched and not
// yet handed out are dropped at once: the pipeline never saw them, and the
// new owner reads them. Then it waits up to RevokeTimeout for the records
// handed out (at most MaxOutstanding per partition) to finish, commits
// what finished, and drops the partitions; the new owner resumes from that
// commit, so a record still unfinished is read again, never skipped.
func (p *Poller) revoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	lanes := lanesOf(m)
	p.mu.Lock()
	for _, l := range lanes {
		if pt := p.owned[l]; pt != nil {
			pt.revoking = true
			p.dropHeld(pt)
			// Nothing more of it is handed out: its lane ends, so the
			// batcher invokes what it buffered of it without waiting for
			// the window, and the wait below is short.
			p.ended = append(p.ended, l)
			p.endNews = true
		}
	}
	p.signal()
	if p.wake != nil {
		p.wake()
		p.wake = nil
	}
	wait := !p.closing
	p.mu.Unlock()
	if wait {
		p.waitIdle(ctx, lanes)
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := p.commitLocked(cctx, lanes); err != nil {
		p.log.Warn("kafka commit of revoked partitions; their unfinished records are read again", "err", err)
	}
	cancel()
	p.drop(lanes, "revoked")
}

// EndedLanes implements source.LaneEnder: the partitions revoked since the
// last call. A revoked partition's records are no longer handed out, so
// every record of it the pipeline has came from a Poll that returned.
func (p *Poller) EndedLanes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.ended
	p.ended = nil
	return out
}

// lost is kgo's OnPartitionsLost (the session expired: the partitions may
// already be someone else's). Committing now could move the new owner's
// offset, so nothing is committed.
func (p *Poller) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.drop(lanesOf(m), "lost")
}

func lanesOf(m map[string][]int32) []string {
	var lanes []string
	for topic, parts := range m {
		for _, n := range parts {
			lanes = append(lanes, payload.KafkaGroup(topic, n))
		}
	}
	return lanes
}

// drop forgets partitions; outcomes of their records are ignored from now
// on.
func (p *Poller) drop(lanes []string, why string) {
	p.mu.Lock()
	abandoned := 0
	var resume map[string][]int32
	for _, l := range lanes {
		pt := p.owned[l]
		if pt == nil {
			continue
		}
		abandoned += p.pending(pt)
		if pt.paused {
			// A pause outlives the assignment in kgo: lift it, or a
			// partition that comes back would never be fetched.
			if resume == nil {
				resume = map[string][]int32{}
			}
			resume[pt.topic] = append(resume[pt.topic], pt.partition)
		}
		p.forget(pt)
		delete(p.owned, l)
	}
	p.mu.Unlock()
	if len(resume) > 0 {
		p.cl.ResumeFetchPartitions(resume)
	}
	if abandoned > 0 {
		p.log.Info("kafka partitions "+why+" with records in flight; they are read again by the new owner", "partitions", lanes, "records", abandoned)
	}
}

// forget retires a part: gone, out of the round robin, records dropped,
// its offsets no longer tracked (a later assignment of the partition is
// tracked from scratch). Called with p.mu held.
func (p *Poller) forget(pt *part) {
	pt.gone = true
	p.tracker.Forget(pt.lane)
	p.dropHeld(pt)
	if pt.active {
		pt.active = false
		p.active--
	}
	if i := slices.Index(p.order, pt); i >= 0 {
		p.order = slices.Delete(p.order, i, i+1)
		if p.rr > i {
			p.rr--
		}
		if p.rr >= len(p.order) {
			p.rr = 0
		}
	}
}

// dropHeld drops the records of pt the pipeline has not seen. Called with
// p.mu held.
func (p *Poller) dropHeld(pt *part) {
	if len(pt.held) == 0 {
		return
	}
	p.held -= len(pt.held)
	pt.held = nil
	// A Poll waiting for room may have room now.
	p.signal()
}

// signal wakes whoever waits for progress (Poll waiting for room, a
// revocation waiting for records to finish). Called with p.mu held.
func (p *Poller) signal() {
	close(p.progress)
	p.progress = make(chan struct{})
}

// waitIdle waits until no record of lanes is unfinished, or RevokeTimeout.
func (p *Poller) waitIdle(ctx context.Context, lanes []string) {
	t := time.NewTimer(p.cfg.RevokeTimeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		pending := 0
		for _, l := range lanes {
			if pt := p.owned[l]; pt != nil {
				pending += p.pending(pt)
			}
		}
		ch := p.progress
		p.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-p.stop:
			return
		}
	}
}

// commitRespErr returns the first partition error of a commit response.
func commitRespErr(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, pt := range t.Partitions {
			if err := kerr.ErrorForCode(pt.ErrorCode); err != nil {
				return fmt.Errorf("%s-%d: %w", t.Topic, pt.Partition, err)
			}
		}
	}
	return nil
}

// Reasons Lambda gives in StateTransitionReason when it disables a Kafka
// mapping whose cluster refuses it.
const (
	ReasonAuthN = "EVENT_SOURCE_AUTHN_ERROR"
	ReasonAuthZ = "EVENT_SOURCE_AUTHZ_ERROR"
)

// disabling wraps errors that retrying does not fix in an
// *esm.DisableError, so the pipeline disables the mapping as Lambda does:
// refused credentials (EVENT_SOURCE_AUTHN_ERROR) and missing ACLs on the
// topic, group or cluster (EVENT_SOURCE_AUTHZ_ERROR). Their API text is
// AWS's phrase (a *source.Problem); the broker's own message goes to the
// log. Other errors are returned as they are (retried).
func disabling(err error) error {
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return &esm.DisableError{Reason: ReasonAuthN, Err: &source.Problem{Phrase: source.PhraseSASL, Err: err}}
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed):
		return &esm.DisableError{Reason: ReasonAuthZ, Err: &source.Problem{Phrase: source.PhraseAuthorize, Err: err}}
	}
	return err
}

// connectError classifies a failed connection check: a refusal by the
// cluster disables the mapping (disabling); anything else (refused, timed
// out, unresolvable, TLS, a peer that is no Kafka broker) is AWS's
// "Connection error" to an API caller, whatever the cause, so that the
// mapping's LastProcessingResult does not tell an open port from a closed
// one or a name that does not resolve.
func connectError(err error) error {
	if d := disabling(err); d != err {
		return d
	}
	return source.ConnectionProblem(err)
}
