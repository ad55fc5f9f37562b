package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/esmd/esmd/source"
)

// ShardEnd is the position stored for a shard that was read to its end and
// whose every record is done: its children may start.
const ShardEnd = "SHARD_END"

// Iterator types, named as both Kinesis and DynamoDB Streams name them.
// DynamoDB Streams has no AT_TIMESTAMP (its mappings are refused with it
// before a poller starts).
const (
	TrimHorizon         = "TRIM_HORIZON"
	Latest              = "LATEST"
	AtTimestamp         = "AT_TIMESTAMP"
	AfterSequenceNumber = "AFTER_SEQUENCE_NUMBER"
)

// Position is where an iterator starts: Type is one of the iterator type
// constants; Seq is set for AfterSequenceNumber, Timestamp for AtTimestamp.
type Position struct {
	Type      string
	Seq       string
	Timestamp time.Time
}

// Shard is one shard of a listing.
type Shard struct {
	// ID is the shard id, the lane of its records.
	ID string
	// Parents are the parent shard ids: one for a split (Kinesis
	// ParentShardId, DynamoDB ParentShardId), two for a merge (plus
	// Kinesis AdjacentParentShardId); empty for an original shard.
	Parents []string
	// Closed is true for a shard that has an ending sequence number: it
	// takes no more records.
	Closed bool
}

// Page is the answer of one read.
type Page struct {
	// Records are the records read, in shard order, encoded (see the
	// package doc for the fields to set).
	Records []source.Record
	// Next is the iterator of the next read; empty when the shard is
	// closed and read to its end (no NextShardIterator).
	Next string
	// Behind is how far the read is behind the tip of the shard (Kinesis
	// MillisBehindLatest), when BehindKnown. IteratorAge uses it only for
	// records without an Arrival.
	Behind      time.Duration
	BehindKnown bool
}

// ErrorKind says what an error of the Client means to the Poller.
type ErrorKind int

const (
	// Other errors are logged and retried with backoff; a failed read
	// renews its iterator.
	Other ErrorKind = iota
	// Throttled (ProvisionedThroughputExceededException,
	// LimitExceededException) is retried with backoff, silently, keeping
	// the iterator.
	Throttled
	// Expired (ExpiredIteratorException) renews the iterator after the last
	// record read, silently.
	Expired
	// Trimmed (TrimmedDataAccessException): the position is past the
	// retention; the iterator is renewed at TRIM_HORIZON with a warning.
	Trimmed
	// NotFound (ResourceNotFoundException) on the listing or on a shard's
	// iterator ends the poller with the error.
	NotFound
)

// Client is what a source provides: its SDK calls, reduced to what the
// Poller needs. Calls are made concurrently, one reader per shard.
type Client interface {
	// Shards lists every shard of the stream (all pages), open and closed.
	Shards(ctx context.Context) ([]Shard, error)
	// Iterator returns a shard iterator at pos (GetShardIterator).
	Iterator(ctx context.Context, shard string, pos Position) (string, error)
	// Read reads up to limit records with iterator (GetRecords) and
	// encodes them.
	Read(ctx context.Context, shard, iterator string, limit int) (Page, error)
	// Classify says what an error of the calls above means.
	Classify(err error) ErrorKind
}

// Pusher is implemented by a Client whose Read waits for records the
// source pushes (Kinesis enhanced fan-out: SubscribeToShard) instead of
// polling. When Pushes returns true, its Reads are not bounded by
// Config.MaxCalls (they mostly wait) and an empty page is followed by the
// next Read at once (Read itself waited); errors still back off.
type Pusher interface {
	Pushes() bool
}

// Positions is where checkpoints are kept, per mapping and shard;
// checkpoint.Store implements it.
type Positions interface {
	Position(ctx context.Context, mapping, lane string) (string, bool, error)
	SetPosition(ctx context.Context, mapping, lane, pos string) error
}

// PositionBatcher is optionally implemented by Positions: it stores the
// positions of several lanes in one write (one fsync). The coalescing
// writer (Config.CheckpointInterval) uses it when it is there.
type PositionBatcher interface {
	SetPositions(ctx context.Context, mapping string, positions map[string]string) error
}

// Common is the configuration every stream source shares:
// kinesis.Config and dynamodbstreams.Config embed it, and so does Config.
// Zero values take the defaults below; a source may set its own before
// New (DynamoDB Streams: Limit 1000, MaxWait 250 ms), and its Config says
// which.
type Common struct {
	// StreamARN is the mapping's EventSourceArn.
	StreamARN string
	// Mapping is the mapping's UUID, the key of its checkpoints.
	Mapping string
	// StartingPosition is TRIM_HORIZON (the default), LATEST or
	// AT_TIMESTAMP (the mapping's StartingPosition); a stored checkpoint
	// wins over it.
	StartingPosition string
	// Positions keeps the checkpoints. Required.
	Positions Positions
	// Limit is the records of one read (GetRecords' Limit; default 10000,
	// the Kinesis maximum; DynamoDB Streams allows 1000).
	Limit int
	// ListInterval is how often shards are listed again (default 10 s); a
	// shard read to its end lists them at once.
	ListInterval time.Duration
	// EmptyWait is the first wait after an empty or throttled read,
	// doubling up to MaxWait (defaults 100 ms and 1 s; AWS polls each
	// Kinesis shard about once a second). A MaxWait below EmptyWait is
	// raised to EmptyWait.
	EmptyWait, MaxWait time.Duration
	// MaxPending bounds the records of one shard read but not yet
	// checkpointed (default 10000): a read asks for at most what is left
	// (a pushing source may exceed it by one event), and reading stops
	// until some are done.
	MaxPending int
	// MaxPendingBytes bounds the bytes (the records' encoded size,
	// Record.Len) read but not yet checkpointed, over all the shards the
	// poller reads (default DefaultMaxPendingBytes). Each shard being read
	// has an equal share; a read asks for about what its share has left
	// (at the mean size of its last read, 1 KiB before its first) and
	// waits until a quarter of the share is free, so that reads stay
	// large. A record larger than a share is still read, one at a time.
	MaxPendingBytes int
	// MinPending is what a shard may read whatever its bytes (CommonFor:
	// two batches per sub-lane, 2 x BatchSize x ParallelizationFactor;
	// default 200): a share smaller than that would leave the function
	// batches smaller than BatchSize.
	MinPending int
	// BatchSize is the mapping's (CommonFor sets it): a read bounded by
	// MaxPendingBytes asks for whole batches, so that a function behind
	// its stream gets full ones, not a short one at the end of each read.
	BatchSize int
	// MaxCalls bounds the GetShardIterator and GetRecords calls in flight
	// at once over all shards (default 64): with many shards, the readers
	// share that many connections instead of each opening its own.
	MaxCalls int
	// CheckpointInterval coalesces checkpoint writes (each one is an
	// fsynced store write). Zero writes every advanced checkpoint before
	// Done returns. Above zero, Done only notes the new positions and a
	// writer stores the latest position of each shard at most once per
	// interval, and on Close; ShardEnd is still written at once, so
	// children never wait for the interval. A crash then redelivers, on
	// top of the batches in flight, what was done in the last interval.
	// CommonFor sets DefaultCheckpointInterval unless a flag says
	// otherwise.
	CheckpointInterval time.Duration
	// Log receives warnings; nil discards them.
	Log *slog.Logger
	// Leases, when set, shares the stream's shards with the other esmd
	// workers of one store (see lease.go): the poller reads only the
	// shards it holds a lease on, as Worker, and every checkpoint it
	// writes is fenced by the lease. Without it (the embedded store) the
	// poller reads every shard.
	Leases Leases
	// Worker is this worker's id in the leases.
	Worker string
	// LeaseTTL is how long a lease lasts without renewal (default 10 s):
	// the poller renews its leases every third of it, and a dead worker's
	// shards are taken over once it has passed.
	LeaseTTL time.Duration
}

// DefaultMaxPendingBytes is Common.MaxPendingBytes's default: 8 MiB read
// ahead of the checkpoints of a mapping, whatever its shard count.
const DefaultMaxPendingBytes = 8 << 20

// Config is what the Poller reads and how: the Common configuration and
// what the source adds to it.
type Config struct {
	Common
	// Name names the stream in errors and logs (default StreamARN).
	Name string
	// Timestamp is the AT_TIMESTAMP position
	// (StartingPositionTimestamp).
	Timestamp time.Time
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = c.StreamARN
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
	// backoff.New would replace a MaxWait below EmptyWait with its 30 s.
	c.MaxWait = max(c.MaxWait, c.EmptyWait)
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.MinPending <= 0 {
		c.MinPending = 200
	}
	c.MinPending = min(c.MinPending, c.MaxPending)
	if c.MaxCalls <= 0 {
		c.MaxCalls = 64
	}
	if c.StartingPosition == "" {
		c.StartingPosition = TrimHorizon
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
}
