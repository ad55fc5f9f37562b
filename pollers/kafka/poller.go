package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

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
	// MaxPoll caps the records one Poll returns (default 10,000).
	MaxPoll int
	// CommitInterval is how often finished offsets are committed (default
	// 500 ms; Close and revocations commit at once). A crash loses at most
	// this much progress: those records are delivered again.
	CommitInterval time.Duration
	// RevokeTimeout bounds how long a revocation waits for the partition's
	// records in flight to finish before abandoning them (default 10 s,
	// well below the group's 60 s rebalance timeout).
	RevokeTimeout time.Duration
	// Log receives the poller's logs (default: discard).
	Log *slog.Logger
	// ClientOpts are extra kgo options, applied last (tests shorten
	// session timeouts with them).
	ClientOpts []kgo.Opt
}

// Poller reads a mapping's topics as a member of its consumer group. It
// implements pipeline.Poller; Failed is never called for Kafka (an ordered
// source) and is a no-op.
type Poller struct {
	cl      *kgo.Client
	cfg     Config
	log     *slog.Logger
	tracker *source.Tracker

	// commitMu serializes commits: the periodic committer and a
	// revocation's final commit. Holding it across a revocation means no
	// commit for a partition is sent after the partition was handed over.
	commitMu sync.Mutex

	mu       sync.Mutex
	owned    map[string]*part // assigned partitions by lane
	epoch    uint64           // last epoch handed out
	progress chan struct{}    // closed and replaced when a record is done
	closing  bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// part is one assigned partition.
type part struct {
	topic     string
	partition int32
	// epoch distinguishes this assignment from an earlier one of the same
	// partition: outcomes of records read under another epoch are ignored.
	epoch uint64
	// mark is the next offset to commit (the checkpoint + 1); committed is
	// the last one committed. -1 when none.
	mark, committed int64
	// first is the offset of the first record read under this epoch and
	// highWater the partition's high watermark at the last fetch, for
	// OffsetLag; -1 when unknown.
	first, highWater int64
}

// handle is the Meta of the records the poller hands out.
type handle struct{ epoch uint64 }

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
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 10 * time.Second
	}
	p := &Poller{cfg: cfg, log: cfg.Log, tracker: source.NewTracker(), owned: map[string]*part{},
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
		return nil, fmt.Errorf("kafka: connect to %v: %w", cfg.Seeds, err)
	}
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

// Poll implements pipeline.Poller: it returns the next records fetched
// from the partitions this member owns, each partition in offset order.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	for {
		fs := p.cl.PollRecords(ctx, p.cfg.MaxPoll)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if fs.IsClientClosed() {
			return nil, ErrClosed
		}
		var fatal error
		fs.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if denied(err) {
				fatal = fmt.Errorf("kafka: %s: %w", topic, err)
				return
			}
			// kgo retries other fetch errors itself; they are worth a line.
			p.log.Warn("kafka fetch", "topic", topic, "partition", partition, "err", err)
		})
		if fatal != nil {
			// Retrying cannot fix credentials or ACLs: the pipeline stops
			// and its LastProcessingResult says why (AWS disables such a
			// mapping with EVENT_SOURCE_AUTHN_ERROR / _AUTHZ_ERROR).
			return nil, fatal
		}
		var out []source.Record
		p.mu.Lock()
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if pt := p.owned[payload.KafkaGroup(fp.Topic, fp.Partition)]; pt != nil && fp.Err == nil {
				pt.highWater = fp.HighWatermark
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			lane := payload.KafkaGroup(r.Topic, r.Partition)
			pt := p.owned[lane]
			if pt == nil {
				// Revoked after it was fetched: the new owner reads it.
				return
			}
			if pt.first < 0 {
				pt.first = r.Offset
			}
			seq := strconv.FormatInt(r.Offset, 10)
			p.tracker.Add(lane, seq)
			out = append(out, source.Record{
				Lane: lane, Key: string(r.Key), ID: seq, Seq: seq, Arrival: r.Timestamp, Group: lane,
				Data: payload.AppendKafka(make([]byte, 0, encodedSize(r)), kafkaRecord(r)),
				Meta: handle{epoch: pt.epoch},
			})
		})
		p.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
	}
}

// encodedSize is an upper bound of a record's encoded size, so encoding
// allocates once.
func encodedSize(r *kgo.Record) int {
	n := 160 + 2*len(r.Topic) + (len(r.Key)+2)/3*4 + (len(r.Value)+2)/3*4
	for _, h := range r.Headers {
		n += 8 + 2*len(h.Key) + 5*len(h.Value)
	}
	return n
}

func kafkaRecord(r *kgo.Record) *payload.KafkaRecord {
	kr := &payload.KafkaRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
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
// AWS's OffsetLag metric, here per partition). Partitions not fetched yet
// are left out.
func (p *Poller) OffsetLag() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.owned))
	for lane, pt := range p.owned {
		pos := pt.mark
		if pos < 0 {
			pos = pt.first
		}
		if pt.highWater < 0 || pos < 0 {
			continue
		}
		out[lane] = max(pt.highWater-pos, 0)
	}
	return out
}

// Done implements pipeline.Poller: the partition's commit mark moves to
// just after the last record such that it and every record before it are
// done. The commit itself follows within CommitInterval.
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	moved := false
	// Newest first: source.Tracker shifts its pending list each time the
	// checkpoint advances, so marking a run of records in reverse advances
	// once per run instead of once per record.
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		h, _ := r.Meta.(handle)
		pt := p.owned[r.Lane]
		if pt == nil || pt.epoch != h.epoch {
			// Abandoned at a revocation: the new owner reads it again.
			continue
		}
		cp, ok := p.tracker.Done(r.Lane, r.Seq)
		if !ok {
			continue
		}
		off, err := strconv.ParseInt(cp, 10, 64)
		if err != nil {
			return fmt.Errorf("kafka: checkpoint %q of %s: %w", cp, r.Lane, err)
		}
		pt.mark = off + 1
		moved = true
	}
	if moved {
		close(p.progress)
		p.progress = make(chan struct{})
	}
	return nil
}

// Failed implements pipeline.Poller. Kafka is an ordered source: the
// pipeline retries or discards failed records itself and never calls it.
func (p *Poller) Failed(ctx context.Context, recs []source.Record) error { return nil }

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
		// Leaving the group revokes everything; revoked sees closing and
		// does not wait for records that will never finish.
		p.cl.Close()
	})
	return p.closeErr
}

func (p *Poller) commitLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
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
	p.mu.Unlock()
	return nil
}

// assigned is kgo's OnPartitionsAssigned: each partition starts a new
// epoch. It runs before any record of the new assignment is fetched.
func (p *Poller) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, parts := range m {
		for _, n := range parts {
			lane := payload.KafkaGroup(topic, n)
			p.epoch++
			p.tracker.Forget(lane)
			p.owned[lane] = &part{topic: topic, partition: n, epoch: p.epoch, mark: -1, committed: -1, first: -1, highWater: -1}
		}
	}
	p.log.Debug("kafka partitions assigned", "partitions", m)
}

// revoked is kgo's OnPartitionsRevoked (a cooperative rebalance moves the
// partitions elsewhere, or the member leaves): it waits up to
// RevokeTimeout for the records in flight to finish, commits what
// finished, and drops the partitions; the new owner resumes from that
// commit, so a record still unfinished is read again, never skipped.
func (p *Poller) revoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	var lanes []string
	for topic, parts := range m {
		for _, n := range parts {
			lanes = append(lanes, payload.KafkaGroup(topic, n))
		}
	}
	p.mu.Lock()
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

// lost is kgo's OnPartitionsLost (the session expired: the partitions may
// already be someone else's). Committing now could move the new owner's
// offset, so nothing is committed.
func (p *Poller) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	var lanes []string
	for topic, parts := range m {
		for _, n := range parts {
			lanes = append(lanes, payload.KafkaGroup(topic, n))
		}
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.drop(lanes, "lost")
}

func (p *Poller) drop(lanes []string, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	abandoned := 0
	for _, l := range lanes {
		abandoned += p.tracker.Pending(l)
		p.tracker.Forget(l)
		delete(p.owned, l)
	}
	if abandoned > 0 {
		p.log.Info("kafka partitions "+why+" with records in flight; they are read again by the new owner", "partitions", lanes, "records", abandoned)
	}
}

// waitIdle waits until no record of lanes is unfinished, or RevokeTimeout.
func (p *Poller) waitIdle(ctx context.Context, lanes []string) {
	t := time.NewTimer(p.cfg.RevokeTimeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		pending := 0
		for _, l := range lanes {
			pending += p.tracker.Pending(l)
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

// denied reports errors that retrying does not fix: authentication and
// authorization failures.
func denied(err error) bool {
	for _, e := range []error{kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed,
		kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
