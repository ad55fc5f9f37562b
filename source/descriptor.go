package source

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/payload"
)

// Descriptor is everything the core needs to know about one source. The
// source's package owns it (pollers/<source>.Descriptor) and cmd/esmd
// registers it in one explicit list; the pipeline, batcher, dispatcher and
// destination read it and never name a source kind themselves.
//
// Required: Source, Envelope, Batching.BatchSize and Open. The rest has a
// documented default.
type Descriptor struct {
	// Source is the API's source kind the descriptor serves (esm.Source:
	// what esm.DetectSource finds in the EventSourceArn, or "kafka" for a
	// SelfManagedEventSource).
	Source esm.Source
	// Delivery says how records are finished: Ordered (checkpoint, commit)
	// or Queue (delete, ack, requeue). Default Ordered.
	Delivery Delivery
	// Concurrency is a Queue source's fixed cap of concurrent invocations
	// of a mapping (Amazon MQ: 5 for ActiveMQ, 1 for RabbitMQ; spec MQ-3),
	// which the poller's lanes apply on one worker. With several workers on
	// one store the pipeline splits it among them, as it does
	// ScalingConfig.MaximumConcurrency. Default 0: none.
	Concurrency int
	// Envelope returns the event envelope of a mapping's events.
	Envelope func(m *esm.Mapping) payload.Envelope
	// Filter is the record layout FilterCriteria are matched against (the
	// per-source decoding of "body", "data", "value"). Default
	// filter.SourceNone: the record as is.
	Filter filter.Source
	// Batching is AWS's default batching for the source; a mapping's
	// BatchSize and MaximumBatchingWindowInSeconds override it.
	Batching Batching
	// Oversize says what becomes of a record too big for any event.
	// Default OversizeDiscard.
	Oversize Oversize
	// Failures reads a ReportBatchItemFailures response: the records of
	// recs it names failed, nil when none. An error wrapping
	// dispatcher.ErrInvalidBatchResponse fails the whole batch. Default
	// IDFailures (itemIdentifier is Record.ID: SQS, Kinesis, DynamoDB).
	Failures func(body []byte, recs []Record) (*BatchError, error)
	// FailureInfo builds the source's part of an OnFailure record
	// ("KinesisBatchInfo", "KafkaBatchInfo", ...) for records of one lane
	// that were discarded; eventSize is the size of their invocation
	// event. Nil: the record carries no batch info (queue sources, whose
	// failures go back to the broker).
	FailureInfo func(m *esm.Mapping, lane string, recs []Record, eventSize int) destination.BatchInfo
	// MaxRetryAttempts, when set, returns the retry limit the source uses
	// for a mapping whose MaximumRetryAttempts is n (-1: infinite). Kafka
	// caps infinite retries at 10 when there is an OnFailure destination.
	MaxRetryAttempts func(m *esm.Mapping, n int64) int64
	// Check is the create-time check that the source exists (AWS answers
	// "Stream not found: <arn>" or SQS's NonExistentQueue). It returns an
	// *esm.Error to refuse the mapping; any other error does not refuse it
	// (the poller retries). Nil: no check.
	Check func(ctx context.Context, env *Env, cfg *esm.Config) error
	// Access is the check, at create and at update, that the secrets a
	// mapping names in SourceAccessConfigurations may be sent where the
	// mapping would send them (SecretTarget with the source's
	// secrets.Target). It returns an *esm.Error to refuse the request. Nil:
	// no check.
	Access func(ctx context.Context, env *Env, cfg *esm.Config) error
	// Open translates a mapping into the poller's configuration and starts
	// the poller. An *esm.DisableError disables the mapping.
	Open func(ctx context.Context, env *Env, m *esm.Mapping) (Poller, error)
	// Destination, when set, returns a sender for an OnFailure destination
	// that the source itself provides (Kafka's kafka://topic in the
	// mapping's own cluster), or ok false for the standard destinations.
	Destination func(ctx context.Context, env *Env, m *esm.Mapping, dest string) (s destination.Sender, ok bool, err error)
	// Claims, when set, says whether this descriptor serves a mapping of
	// its Source that other descriptors share (Amazon MQ: a RabbitMQ or an
	// ActiveMQ broker behind one "mq" source). Descriptors of one Source are
	// asked in registration order; one without Claims takes every mapping
	// the others did not claim. Nil: the descriptor is its Source's only
	// one, or its fallback.
	Claims func(ctx context.Context, env *Env, cfg *esm.Config) (bool, error)
	// Rewind, when set, replaces a mapping's positions (checkpoints in
	// Env.Store, or offsets the source keeps) so that the mapping's next
	// poller reads from `to`: esmd replay. The mapping's pipeline is stopped
	// while it runs. Nil: the source cannot be rewound (queues: a message
	// is gone once it was processed).
	Rewind func(ctx context.Context, env *Env, m *esm.Mapping, to esm.Position) error
	// Flags are the repeatable string flags the source adds to serve and
	// run (for example --mq-broker ARN=URL); their values reach Open and
	// Check in Env.Flags.
	Flags []Flag
}

// Flag is a repeatable string flag of a source.
type Flag struct {
	Name, Usage string
}

// Batching is a source's default batching (spec section 2).
type Batching struct {
	// BatchSize: 10 for SQS, 100 for the other sources.
	BatchSize int
	// Window is MaximumBatchingWindowInSeconds' default: 0 for Kinesis,
	// DynamoDB Streams and SQS, 500 ms for Kafka, Amazon MQ and DocumentDB.
	Window time.Duration
	// FromFirstRecord opens a lane's window at the first record of the next
	// batch (Amazon MQ, DocumentDB, Kafka) instead of after the lane's
	// previous invocation (Kinesis, DynamoDB Streams, SQS).
	FromFirstRecord bool
	// Linger is the least time a batch that is not full waits for more
	// records, even with a window of 0 (batcher.Policy.Linger): Amazon MQ's
	// deliveries come one at a time. Default 0.
	Linger time.Duration
	// Deal says the source's records have no lanes of their own (an SQS
	// queue): the batcher deals them to as many lanes as the mapping may
	// have invocations in flight, keeping a Record.Key (FIFO message group)
	// on one lane while any of its records is held (batcher.Policy.Lanes).
	// The poller hands out one receive per Poll.
	Deal bool
}

// Oversize says what becomes of a record whose event alone passes the
// invocation payload limit (6 MB): no batch can carry it.
type Oversize uint8

const (
	// OversizeDiscard routes it to the OnFailure destination (condition
	// MaximumPayloadSizeExceeded) and then finishes it, so its lane is never
	// stuck (ordered sources, spec 2.3).
	OversizeDiscard Oversize = iota
	// OversizeRedeliver hands it back to the broker, whose redrive policy
	// ends its life (SQS).
	OversizeRedeliver
	// OversizeDrop finishes it without invoking and counts it dropped
	// (Amazon MQ, spec MQ-6; DocumentDB).
	OversizeDrop
)

// Validate reports what a descriptor lacks.
func (d *Descriptor) Validate() error {
	switch {
	case d.Source == "":
		return fmt.Errorf("source: descriptor without a Source")
	case d.Envelope == nil:
		return fmt.Errorf("source %s: descriptor without an Envelope", d.Source)
	case d.Open == nil:
		return fmt.Errorf("source %s: descriptor without Open", d.Source)
	case d.Batching.BatchSize < 1:
		return fmt.Errorf("source %s: descriptor without a default BatchSize", d.Source)
	}
	return nil
}

// Env is what a source's Open and Check may use.
type Env struct {
	// AWS is the AWS SDK configuration esmd runs with.
	AWS aws.Config
	// Secrets resolves SourceAccessConfigurations secret ARNs
	// (--secrets-file, then AWS Secrets Manager).
	Secrets *secrets.Resolver
	// Flags holds the values of the source's Flags, by name.
	Flags map[string][]string
	// Log is esmd's logger.
	Log *slog.Logger
	// Store is where ordered sources keep their checkpoints (Position /
	// SetPosition per mapping and lane): the embedded store, or the
	// PostgreSQL store several workers share (--store).
	Store Checkpoints
	// Worker is this esmd process's identity among the workers (--worker-id,
	// else internal/workerid's, kept in --data-dir: the same across its
	// restarts, different for every worker). Sources whose lanes are leased
	// (stream shards, with the PostgreSQL store) hold their leases under
	// it; Kafka joins its groups as a static member with it. "" when there
	// is none: sources then do without (Kafka joins as a dynamic member).
	Worker string
	// LeaseTTL is how long a lane lease lasts without renewal
	// (--lease-duration): a dead worker's lanes are taken over after it.
	LeaseTTL time.Duration
}

// Checkpoints keeps the positions of ordered sources, per mapping and
// lane; checkpoint.Store (embedded) and pgstore.Store (PostgreSQL)
// implement it. A position is written only once every record at or
// before it is done.
type Checkpoints interface {
	Position(ctx context.Context, mapping, lane string) (pos string, ok bool, err error)
	SetPosition(ctx context.Context, mapping, lane, pos string) error
	// SetPositions writes several lanes' positions in one write.
	SetPositions(ctx context.Context, mapping string, positions map[string]string) error
}

// Flag returns the last value given for a source flag, or "".
func (e *Env) Flag(name string) string {
	v := e.Flags[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// IDFailures reads the partial batch response of SQS, Kinesis and DynamoDB
// Streams, whose itemIdentifier is the record's ID.
func IDFailures(body []byte, recs []Record) (*BatchError, error) {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	bad, err := dispatcher.ParseBatchResponse(body, ids)
	if err != nil || len(bad) == 0 {
		return nil, err
	}
	set := make(map[string]bool, len(bad))
	for _, id := range bad {
		set[id] = true
	}
	be := NewBatchError(nil)
	for i, r := range recs {
		if set[r.ID] {
			be.Failed(i, nil)
		}
	}
	return be, nil
}
