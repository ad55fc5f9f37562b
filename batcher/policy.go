package batcher

import (
	"errors"
	"fmt"
	"time"
)

// WindowStart says when the batching window (MaximumBatchingWindowInSeconds)
// of a lane starts. AWS documents two behaviours (spec BAT-6, API spec 8).
type WindowStart uint8

const (
	// AfterInvoke: the window of a lane opens when the lane's previous
	// invocation completes (the caller's Done), or, when the lane was idle,
	// when its first record arrives. Records that arrive while a batch is in
	// flight are therefore held until Done+Window even if they have waited
	// longer than Window already. AWS: Kinesis, DynamoDB Streams, SQS.
	AfterInvoke WindowStart = iota
	// FirstRecord: the window opens when the first record of the next
	// batch arrives (is added), whatever the lane was doing. A lane whose
	// window expired while its previous batch was in flight releases its next
	// batch as soon as Done is called. AWS: Amazon MQ, DocumentDB and (per
	// the API spec) Kafka.
	FirstRecord
)

func (w WindowStart) String() string {
	switch w {
	case AfterInvoke:
		return "after-invoke"
	case FirstRecord:
		return "first-record"
	}
	return fmt.Sprintf("WindowStart(%d)", uint8(w))
}

// Policy is the batching part of an event source mapping.
type Policy struct {
	// BatchSize is the most records in one batch. AWS: BatchSize (1 to
	// 10,000; defaults 10 for SQS, 100 otherwise). Required.
	BatchSize int
	// Window is how long a lane gathers records before its batch is
	// released. AWS: MaximumBatchingWindowInSeconds (0 to 300 s; default 0
	// for Kinesis, DynamoDB Streams and SQS, 500 ms for Kafka, Amazon MQ and
	// DocumentDB). Zero releases whatever is buffered as soon as the lane is
	// free.
	Window time.Duration
	// WindowStart says when Window starts counting (see WindowStart).
	WindowStart WindowStart
	// ParallelizationFactor splits a lane into this many sub-lanes by a hash
	// of the record Key, each with its own batch in flight. AWS:
	// ParallelizationFactor (1 to 10, default 1; Kinesis and DynamoDB
	// Streams). Zero means 1.
	ParallelizationFactor int
	// Linger is the least time a lane's batch that is not full waits for
	// more records, even with a Window of 0: records that arrive one at a
	// time (RabbitMQ deliveries) then make fuller batches. Default 0; not an
	// AWS parameter (esmd uses 1 ms for Amazon MQ).
	Linger time.Duration
	// Lanes, above 0, makes the batcher deal records to this many lanes of
	// its own, for a source whose records have no lanes (an SQS queue):
	// Record.Lane is overwritten. Records are dealt in runs of BatchSize,
	// and with a Window of 0 each Add or AddAll (one receive) starts a new
	// run, since AWS invokes with what one receive returned (spec SQS-1). A
	// record with a Key (an SQS FIFO message group) goes to the lane of its
	// key's records while the batcher holds any of them, buffered or in
	// flight, so one key never has two batches in flight and its records
	// reach the function in order; a run may hold several keys, as an AWS
	// FIFO batch does (spec SQS-20). AWS: min(1,000,
	// ScalingConfig.MaximumConcurrency) concurrent invocations.
	Lanes int
	// TumblingWindow groups the records of a lane into windows of this
	// length aligned on the Unix epoch, by Record.Arrival, and carries the
	// function's state from one invocation of a window to the next. AWS:
	// TumblingWindowInSeconds (0 to 900 s; Kinesis and DynamoDB Streams).
	// Zero disables tumbling windows. Must be whole seconds.
	TumblingWindow time.Duration
}

// MaxParallelizationFactor is the largest ParallelizationFactor AWS accepts.
const MaxParallelizationFactor = 10

// Validate reports the first field out of the ranges the batcher supports.
// The ranges are AWS's, except that Window is not limited to whole seconds
// (the 500 ms default is not).
func (p Policy) Validate() error {
	var errs []error
	if p.BatchSize < 1 || p.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("BatchSize %d is outside 1..10000", p.BatchSize))
	}
	if p.Window < 0 || p.Window > 300*time.Second {
		errs = append(errs, fmt.Errorf("batching window %v is outside 0..300s", p.Window))
	}
	if p.WindowStart > FirstRecord {
		errs = append(errs, fmt.Errorf("unknown %v", p.WindowStart))
	}
	if p.Linger < 0 || p.Linger > 300*time.Second {
		errs = append(errs, fmt.Errorf("linger %v is outside 0..300s", p.Linger))
	}
	if p.Lanes < 0 {
		errs = append(errs, fmt.Errorf("negative lanes %d", p.Lanes))
	}
	if p.Lanes > 0 && (p.ParallelizationFactor > 1 || p.TumblingWindow > 0) {
		errs = append(errs, errors.New("dealt lanes take no ParallelizationFactor or tumbling window"))
	}
	if p.ParallelizationFactor < 0 || p.ParallelizationFactor > MaxParallelizationFactor {
		errs = append(errs, fmt.Errorf("ParallelizationFactor %d is outside 1..10", p.ParallelizationFactor))
	}
	if p.TumblingWindow < 0 || p.TumblingWindow > 900*time.Second || p.TumblingWindow%time.Second != 0 {
		errs = append(errs, fmt.Errorf("tumbling window %v is not whole seconds in 0..900s", p.TumblingWindow))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("batcher: invalid policy: %w", err)
	}
	return nil
}

// Option configures a Batcher beyond its Policy.
type Option func(*config) error

type config struct {
	maxPayload  int
	maxState    int
	windowGrace time.Duration
	clock       Clock // nil: the real clock
	set         map[string]bool
}

func (c *config) once(name string) error {
	if c.set[name] {
		return fmt.Errorf("batcher: option %s given twice", name)
	}
	c.set[name] = true
	return nil
}

// WithMaxPayloadSize sets the largest encoded event, in bytes. Default
// payload.MaxPayloadSize (6,291,456), the synchronous Invoke request limit
// AWS cuts batches at; not configurable on AWS. Useful for an endpoint with a
// smaller limit.
func WithMaxPayloadSize(n int) Option {
	return func(c *config) error {
		if n < 2 {
			return fmt.Errorf("batcher: max payload size %d is too small", n)
		}
		c.maxPayload = n
		return c.once("WithMaxPayloadSize")
	}
}

// WithMaxWindowState sets the largest tumbling-window state, in bytes of the
// JSON the function returned, before the window is terminated early. Default
// 1,048,576 (AWS: "state can be a maximum of 1 MB per shard"); not
// configurable on AWS.
func WithMaxWindowState(n int) Option {
	return func(c *config) error {
		if n < 2 {
			return fmt.Errorf("batcher: max window state %d is too small", n)
		}
		c.maxState = n
		return c.once("WithMaxWindowState")
	}
}

// WithWindowGrace sets how long after a tumbling window's end, with no record
// of a later window seen on the lane, the window is treated as over and its
// final invocation is made. Records of a window can reach the poller after
// the window ended (they are stamped by the stream on arrival and polled
// later), so this is the wait for late records. Default 2 minutes (AWS,
// Kinesis: "Lambda waits up to 2 minutes before treating the window as
// over" when no new records arrive); not configurable on AWS.
func WithWindowGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("batcher: negative window grace %v", d)
		}
		c.windowGrace = d
		return c.once("WithWindowGrace")
	}
}
