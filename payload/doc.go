// Package payload encodes the events that AWS Lambda event source mappings
// deliver to a function, byte for byte as AWS sends them.
//
// The package has two layers:
//
//   - Record encoders (AppendSQS, AppendKinesis, AppendDynamoDB, AppendKafka,
//     AppendRabbitMQ, AppendActiveMQ, AppendDocumentDB) turn one source
//     record, described by a plain Go struct, into the JSON element that AWS
//     puts inside the event. Pollers call them once per record in their own
//     goroutine; the filter then matches the very same bytes and the batcher
//     carries them unchanged.
//   - Envelopes (Envelope, Builder) wrap a batch of already encoded records
//     into the Invoke payload: {"Records":[...]} for SQS, Kinesis and
//     DynamoDB Streams, the Kafka and RabbitMQ maps keyed by topic-partition
//     or queue::vhost, the ActiveMQ and DocumentDB arrays, and the tumbling
//     window fields for streams. Builder.SizeWith gives the exact size of the
//     event before a record is added, so the batcher can cut a batch before
//     MaxPayloadSize (6,291,456 bytes) measured on the encoded event.
//
// Encoding follows the AWS documentation examples and the recordings of real
// AWS events in testdata/conformance (field order, lower-camel SQS keys, empty
// stringListValues/binaryListValues arrays, base64 binaries, signed Kafka
// header bytes, nulls in RabbitMQ basicProperties). Where AWS's choice is not
// observable the package documents the decision it made (see the comments on
// AppendString and AppendEpochSeconds).
//
// The encoders use no reflection and no AWS SDK; they append to a caller
// supplied buffer so a poller can reuse it.
package payload
