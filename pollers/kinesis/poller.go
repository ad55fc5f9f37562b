// Package kinesis is the poller of Kinesis Data Streams mappings: it lists
// the stream's shards (and lists them again to find the children of splits
// and merges), reads every shard with GetShardIterator/GetRecords on the
// shared throughput, starts a child shard only once its parents are read
// to their end and every one of their records is done, and checkpoints
// each shard in a position store, never past a record that is not done.
//
// Lane is the shard id, Key the partition key, ID and Seq the sequence
// number; Data is the event record payload.AppendKinesis encodes.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// ShardEnd is the position stored for a shard that was read to its end and
// whose every record is done: its children may start.
const ShardEnd = "SHARD_END"

// Positions is where checkpoints are kept, per mapping and shard;
// checkpoint.Store implements it.
type Positions interface {
	Position(ctx context.Context, mapping, lane string) (string, bool, error)
	SetPosition(ctx context.Context, mapping, lane, pos string) error
}

// API is the part of the Kinesis client the poller uses.
type API interface {
	ListShards(ctx context.Context, in *awskinesis.ListShardsInput, o ...func(*awskinesis.Options)) (*awskinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *awskinesis.GetShardIteratorInput, o ...func(*awskinesis.Options)) (*awskinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *awskinesis.GetRecordsInput, o ...func(*awskinesis.Options)) (*awskinesis.GetRecordsOutput, error)
}

// Config is what the poller reads and from where.
type Config struct {
	// StreamARN is the mapping's EventSourceArn (a stream, or a stream
	// consumer ARN, read here through the shared throughput).
	StreamARN string
	// Mapping is the mapping's UUID, the key of its checkpoints.
	Mapping string
	// StartingPosition is TRIM_HORIZON, LATEST or AT_TIMESTAMP; a stored
	// checkpoint wins over it.
	StartingPosition string
	// Timestamp is the AT_TIMESTAMP position.
	Timestamp time.Time
	// Positions keeps the checkpoints. Required.
	Positions Positions
	// InvokeIdentityArn is the event's invokeIdentityArn (the function's
	// execution role); empty when unknown.
	InvokeIdentityArn string
	// Limit is GetRecords' Limit (default 10000).
	Limit int32
	// ListInterval is how often shards are listed again (default 10 s); a
	// shard read to its end lists them at once.
	ListInterval time.Duration
	// EmptyWait is the first wait after an empty read, doubling up to
	// MaxWait (defaults 100 ms and 1 s; AWS polls each shard once a second).
	EmptyWait, MaxWait time.Duration
	// MaxPending bounds the records of one shard read but not yet done
	// (default 10000): reading stops until some are done.
	MaxPending int
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// StreamName returns the stream name of a stream or consumer ARN
// (arn:aws:kinesis:region:account:stream/name[/consumer/c:ts]) and the
// ARN's region.
func StreamName(arn string) (name, region string, err error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "kinesis" || !strings.HasPrefix(parts[5], "stream/") {
		return "", "", fmt.Errorf("kinesis: not a stream ARN: %q", arn)
	}
	name = strings.TrimPrefix(parts[5], "stream/")
	if i := strings.Index(name, "/consumer/"); i >= 0 {
		name = name[:i]
	}
	if name == "" {
		return "", "", fmt.Errorf("kinesis: not a stream ARN: %q", arn)
	}
	return name, parts[3], nil
}

// StreamARN returns the stream ARN of a stream or consumer ARN.
func StreamARN(arn string) string {
	if i := strings.Index(arn, "/consumer/"); i >= 0 {
		return arn[:i]
	}
	return arn
}

// Poller reads one mapping's stream. It implements pipeline.Poller.
type Poller struct {
	api     API
	c       Config
	name    string
	region  string
	srcARN  string
	tracker *source.Tracker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	out   chan []source.Record
	errs  chan error
	relst chan struct{}

	// doneMu serialises checkpoint writes, so that they never go backwards
	// and a shard's ShardEnd is never overwritten by an older position.
	doneMu sync.Mutex

	mu     sync.Mutex
	shards map[string]*shard
	room   chan struct{} // closed and replaced when records are done
}

type shard struct {
	id      string
	parents []string
	// fromStart: without a checkpoint the shard is read from its
	// beginning, not StartingPosition, because it appeared after the
	// poller started or a parent had a checkpoint when it started (the
	// mapping read the parent: the child was made since).
	fromStart bool
	// readDone is set once GetRecords returned no next iterator.
	readDone bool
	finished chan struct{} // closed when the shard is done and checkpointed
	finOnce  sync.Once
	lag      atomic.Int64 // MillisBehindLatest of the last read
	read     atomic.Bool  // a GetRecords succeeded
}

// New starts a poller on api. Shards are listed once before New returns,
// so a missing stream is an error here.
func New(ctx context.Context, api API, c Config) (*Poller, error) {
	if c.Positions == nil {
		return nil, errors.New("kinesis: Config.Positions is required")
	}
	name, region, err := StreamName(c.StreamARN)
	if err != nil {
		return nil, err
	}
	if c.Limit <= 0 {
		c.Limit = 10000
	}
	if c.ListInterval <= 0 {
		c.ListInterval = 10 * time.Second
	}
	if c.EmptyWait <= 0 {
		c.EmptyWait = 100 * time.Millisecond
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.StartingPosition == "" {
		c.StartingPosition = string(types.ShardIteratorTypeTrimHorizon)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	p := &Poller{
		api: api, c: c, name: name, region: region, srcARN: StreamARN(c.StreamARN),
		tracker: source.NewTracker(),
		out:     make(chan []source.Record, 16),
		errs:    make(chan error, 1),
		relst:   make(chan struct{}, 1),
		shards:  map[string]*shard{},
		room:    make(chan struct{}),
	}
	shards, err := p.list(ctx)
	if err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.add(shards, true)
	p.wg.Add(1)
	go p.discover()
	return p, nil
}

// Open starts a poller with a client made from cfg (endpoint from the
// SDK configuration, AWS_ENDPOINT_URL_KINESIS).
func Open(ctx context.Context, cfg aws.Config, c Config) (*Poller, error) {
	if _, region, err := StreamName(c.StreamARN); err == nil && region != "" {
		cfg = cfg.Copy()
		cfg.Region = region
	}
	return New(ctx, awskinesis.NewFromConfig(cfg), c)
}

func (p *Poller) list(ctx context.Context) ([]types.Shard, error) {
	var out []types.Shard
	in := &awskinesis.ListShardsInput{StreamName: aws.String(p.name)}
	for {
		res, err := p.api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: ListShards %s: %w", p.name, err)
		}
		out = append(out, res.Shards...)
		if res.NextToken == nil || *res.NextToken == "" {
			return out, nil
		}
		in = &awskinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// add starts a reader for every shard not seen before; initial is true for
// the listing made when the poller starts.
func (p *Poller) add(shards []types.Shard, initial bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var fresh []*shard
	for _, s := range shards {
		id := aws.ToString(s.ShardId)
		if _, ok := p.shards[id]; ok {
			continue
		}
		sh := &shard{id: id, fromStart: !initial, finished: make(chan struct{})}
		for _, par := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
			if par != nil && *par != "" {
				sh.parents = append(sh.parents, *par)
				if initial && !sh.fromStart {
					_, ok, err := p.c.Positions.Position(context.Background(), p.c.Mapping, *par)
					sh.fromStart = ok || err != nil
				}
			}
		}
		p.shards[id] = sh
		fresh = append(fresh, sh)
	}
	for _, sh := range fresh {
		p.wg.Add(1)
		go p.read(sh)
	}
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
		shards, err := p.list(p.ctx)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if isNotFound(err) {
				p.fail(err)
				return
			}
			p.c.Log.Warn("kinesis: listing shards failed", "stream", p.srcARN, "err", err)
			continue
		}
		p.add(shards, false)
	}
}

func (p *Poller) fail(err error) {
	select {
	case p.errs <- err:
	default:
	}
}

func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

func isThrottled(err error) bool {
	var pt *types.ProvisionedThroughputExceededException
	var le *types.LimitExceededException
	return errors.As(err, &pt) || errors.As(err, &le)
}

// sleep waits d or until the poller closes; false when it closed.
func (p *Poller) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitParents waits until every parent shard the poller knows is finished.
// A parent no longer listed (past retention) counts as finished.
func (p *Poller) waitParents(sh *shard) bool {
	for _, id := range sh.parents {
		p.mu.Lock()
		par := p.shards[id]
		p.mu.Unlock()
		if par == nil {
			continue
		}
		select {
		case <-par.finished:
		case <-p.ctx.Done():
			return false
		}
	}
	return true
}

// iterator returns a shard iterator after the last record read (after),
// else after the checkpoint, else at its beginning for a shard that
// appeared after the poller started or whose parent has a checkpoint,
// else at the starting position.
func (p *Poller) iterator(sh *shard, after string) (string, bool, error) {
	in := &awskinesis.GetShardIteratorInput{StreamName: aws.String(p.name), ShardId: aws.String(sh.id)}
	if after == "" {
		pos, ok, err := p.c.Positions.Position(p.ctx, p.c.Mapping, sh.id)
		if err != nil {
			return "", false, err
		}
		if ok && pos == ShardEnd {
			return "", true, nil
		}
		if ok {
			after = pos
		}
	}
	switch {
	case after != "":
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(after)
	case sh.fromStart:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	case p.c.StartingPosition == string(types.ShardIteratorTypeAtTimestamp):
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(p.c.Timestamp)
	default:
		in.ShardIteratorType = types.ShardIteratorType(p.c.StartingPosition)
	}
	res, err := p.api.GetShardIterator(p.ctx, in)
	if err != nil {
		return "", false, err
	}
	return aws.ToString(res.ShardIterator), false, nil
}

// read is the reader of one shard.
func (p *Poller) read(sh *shard) {
	defer p.wg.Done()
	if !p.waitParents(sh) {
		return
	}
	var (
		iter     string
		lastRead string
		wait     = p.c.EmptyWait
	)
	backoff := func() bool {
		ok := p.sleep(wait)
		wait = min(wait*2, p.c.MaxWait)
		return ok
	}
	for p.ctx.Err() == nil {
		if iter == "" {
			it, ended, err := p.iterator(sh, lastRead)
			if ended {
				p.finish(sh, false)
				return
			}
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				if isNotFound(err) {
					p.fail(fmt.Errorf("kinesis: shard %s: %w", sh.id, err))
					return
				}
				if !isThrottled(err) {
					p.c.Log.Warn("kinesis: GetShardIterator failed", "shard", sh.id, "err", err)
				}
				if !backoff() {
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
		if p.tracker.Pending(sh.id) >= p.c.MaxPending {
			select {
			case <-room:
			case <-p.ctx.Done():
				return
			}
			continue
		}
		res, err := p.api.GetRecords(p.ctx, &awskinesis.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(p.c.Limit)})
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if !isThrottled(err) {
				// Expired or invalid iterators (kinesis-mock answers an
				// invalid one with a 500): renew after the last record read.
				iter = ""
				var ei *types.ExpiredIteratorException
				if !errors.As(err, &ei) {
					p.c.Log.Warn("kinesis: GetRecords failed", "shard", sh.id, "err", err)
				}
			}
			if !backoff() {
				return
			}
			continue
		}
		if res.MillisBehindLatest != nil {
			sh.lag.Store(*res.MillisBehindLatest)
		}
		sh.read.Store(true)
		if len(res.Records) > 0 {
			recs := make([]source.Record, len(res.Records))
			for i := range res.Records {
				recs[i] = p.record(sh, &res.Records[i])
				p.tracker.Add(sh.id, recs[i].Seq)
			}
			lastRead = recs[len(recs)-1].Seq
			select {
			case p.out <- recs:
			case <-p.ctx.Done():
				return
			}
			wait = p.c.EmptyWait
		}
		if res.NextShardIterator == nil || *res.NextShardIterator == "" {
			p.finish(sh, true)
			return
		}
		iter = *res.NextShardIterator
		if len(res.Records) == 0 && !backoff() {
			return
		}
	}
}

func (p *Poller) record(sh *shard, r *types.Record) source.Record {
	kr := payload.KinesisRecord{
		ShardID:                     sh.id,
		PartitionKey:                aws.ToString(r.PartitionKey),
		SequenceNumber:              aws.ToString(r.SequenceNumber),
		Data:                        r.Data,
		ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
		InvokeIdentityArn:           p.c.InvokeIdentityArn,
		AWSRegion:                   p.region,
		EventSourceARN:              p.srcARN,
	}
	if r.EncryptionType == types.EncryptionTypeKms {
		kr.EncryptionType = "KMS"
	}
	return source.Record{
		Lane:    sh.id,
		Key:     kr.PartitionKey,
		ID:      kr.SequenceNumber,
		Seq:     kr.SequenceNumber,
		Arrival: kr.ApproximateArrivalTimestamp,
		Data:    payload.AppendKinesis(nil, &kr),
		Meta:    sh,
	}
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
		if err := p.c.Positions.SetPosition(context.WithoutCancel(p.ctx), p.c.Mapping, sh.id, ShardEnd); err != nil {
			p.c.Log.Warn("kinesis: checkpoint failed", "shard", sh.id, "err", err)
			return
		}
	}
	p.tracker.Forget(sh.id)
	sh.finOnce.Do(func() { close(sh.finished) })
}

// Poll returns the next records read from any shard.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case err := <-p.errs:
		return nil, err
	case recs := <-p.out:
	more:
		for len(recs) < 10000 {
			select {
			case r := <-p.out:
				recs = append(recs, r...)
			default:
				break more
			}
		}
		return recs, nil
	}
}

// Done checkpoints each shard at its last record such that it and every
// record before it are done, and finishes shards read to their end.
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	p.doneMu.Lock()
	defer p.doneMu.Unlock()
	cps := map[string]string{}
	var lanes []string
	for i := range recs {
		if _, ok := recs[i].Meta.(*shard); !ok {
			continue
		}
		if cp, ok := p.tracker.Done(recs[i].Lane, recs[i].Seq); ok {
			if _, seen := cps[recs[i].Lane]; !seen {
				lanes = append(lanes, recs[i].Lane)
			}
			cps[recs[i].Lane] = cp
		}
	}
	wctx := context.WithoutCancel(ctx)
	var errs []error
	for _, lane := range lanes {
		if err := p.c.Positions.SetPosition(wctx, p.c.Mapping, lane, cps[lane]); err != nil {
			errs = append(errs, err)
			continue
		}
		p.mu.Lock()
		sh := p.shards[lane]
		end := sh != nil && sh.readDone
		p.mu.Unlock()
		if end && p.tracker.Pending(lane) == 0 {
			p.finishLocked(sh, true)
		}
	}
	if len(lanes) > 0 {
		p.mu.Lock()
		close(p.room)
		p.room = make(chan struct{})
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Failed is never called for streams (their failures go through the retry
// policy); it does nothing.
func (p *Poller) Failed(context.Context, []source.Record) error { return nil }

// Close stops the readers. Records not done are read again from the
// checkpoints by the next poller.
func (p *Poller) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// Lag returns the MillisBehindLatest of the last read of each shard that
// is being read (read at least once, not finished).
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
			out[id] = time.Duration(sh.lag.Load()) * time.Millisecond
		}
	}
	return out
}

// IsStreamNotFound reports whether err says the stream does not exist.
func IsStreamNotFound(err error) bool { return isNotFound(err) }
