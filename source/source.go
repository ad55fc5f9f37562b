// Package source is the contract between a source (one package under
// pollers/) and the rest of the data plane. It holds:
//
//   - Record, what a poller hands out: one source record encoded as the JSON
//     element AWS puts in the function's event (or able to encode itself
//     into the event on demand), with what the core needs to batch, order,
//     retry and acknowledge it;
//   - Poller, how the pipeline reads records and reports their outcome
//     (Ack, with per-record failures as one *BatchError value, in the style
//     of benthos's batch.Error);
//   - Descriptor, everything the core needs to know about a source: its
//     event envelope, filter decoding, AWS's default batching, how a partial
//     batch response names records, its OnFailure batch info, its
//     create-time check, and how a mapping becomes a poller;
//   - Tracker, stream checkpoints over out-of-order completion.
//
// A poller never knows about batching, invoking or retries, and the core
// never knows how a source acknowledges or what its kind is: it asks the
// Descriptor.
package source

import (
	"time"

	"github.com/esmd/esmd/payload"
)

// Record is one source record on its way to the function.
type Record struct {
	// Lane is the unit of ordering: a shard id, a "topic-partition", an SQS
	// FIFO message group, a queue, a change stream. At most one batch per
	// lane (per sub-lane with ParallelizationFactor) is in flight.
	Lane string
	// Key is the partition key (Kinesis partition key, DynamoDB item key,
	// Kafka key): records with the same Key keep their order across
	// ParallelizationFactor sub-lanes.
	Key string
	// ID is the item identifier a partial batch response names: the SQS
	// messageId, the Kinesis or DynamoDB sequence number, the Kafka offset.
	ID string
	// Seq is the record's position in its lane (sequence number or offset),
	// used for checkpoints and the OnFailure batch info.
	Seq string
	// Arrival is when the source received the record
	// (approximateArrivalTimestamp, ApproximateCreationDateTime, SentTimestamp),
	// for MaximumRecordAgeInSeconds and the OnFailure batch info.
	Arrival time.Time
	// Group is the envelope group of grouped events: "topic-partition" for
	// Kafka, "queue::vhost" for RabbitMQ; empty for the Records-array events.
	Group string
	// Data is the record exactly as it appears inside the event (package
	// payload encodes it). The filter matches these bytes and the batcher
	// measures the 6 MB cap on them. Nil when Encoder is set.
	Data []byte
	// Encoder, when not nil, encodes the record on demand instead of Data:
	// the record is then encoded straight into each event that carries it,
	// by the goroutine that invokes its batch (so in parallel across
	// lanes), with no buffer of its own that the event would copy. Size is
	// the exact length it appends. Use Len, Bytes and AddTo rather than
	// Data where either may be set.
	Encoder payload.Encoder
	// Size is the length of what Encoder appends (unused without it).
	Size int
	// Meta is the poller's own handle (a receipt handle, a delivery tag).
	Meta any
}

// Len returns the length of the record's encoded bytes.
func (r *Record) Len() int {
	if r.Encoder != nil && r.Data == nil {
		return r.Size
	}
	return len(r.Data)
}

// Bytes returns the record's encoded bytes: Data, or what Encoder appends
// to a new slice.
func (r *Record) Bytes() []byte {
	if r.Encoder != nil && r.Data == nil {
		return r.Encoder.AppendEncoded(make([]byte, 0, r.Size))
	}
	return r.Data
}

// AppendTo appends the record's encoded bytes to dst.
func (r *Record) AppendTo(dst []byte) []byte {
	if r.Encoder != nil && r.Data == nil {
		return r.Encoder.AppendEncoded(dst)
	}
	return append(dst, r.Data...)
}

// AddTo adds the record to an event's builder, under its Group.
func (r *Record) AddTo(b *payload.Builder) {
	if r.Encoder != nil && r.Data == nil {
		b.AddEncoder(r.Group, r.Size, r.Encoder)
		return
	}
	b.Add(r.Group, r.Data)
}
