// Package source is the contract between a source (one package under
// pollers/) and the rest of the data plane. It holds:
//
//   - Record, what a poller hands out: one source record already encoded as
//     the JSON element AWS puts in the function's event, with what the core
//     needs to batch, order, retry and acknowledge it;
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

import "time"

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
	// measures the 6 MB cap on them.
	Data []byte
	// Meta is the poller's own handle (a receipt handle, a delivery tag).
	Meta any
}
