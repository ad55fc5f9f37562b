// Package destination builds the OnFailure invocation records of event
// source mappings and delivers them to SQS, SNS, S3 or a Kafka topic.
//
// Record.AppendJSON writes the record exactly as AWS does (spec
// esm-runtime-semantics.md 3.8 and 5.4, and the recordings in
// testdata/conformance/aws-recordings): requestContext, responseContext
// (left out for RecordAgeExceeded, null for Kafka's
// MaximumPayloadSizeExceeded, functionError null after a partial batch
// failure), version "1.0", a millisecond "Z" timestamp, then the source's
// member (Record.Info; each source's package defines its own, e.g.
// KinesisBatchInfo or KafkaBatchInfo).
//
// Senders deliver one record. A Sender that fails returns an error; the
// caller retries, and records are not done until a Send succeeded. New picks
// the sender from the OnFailure Destination (an SQS, SNS or S3 ARN, or
// kafka://topic).
package destination
