// Package pipeline joins the stages of one mapping's data plane: records
// from a poller, the filter, the batcher, the invocation, and the retry
// policy that decides, batch by batch, which records are done and which are
// discarded to the OnFailure destination.
//
// Retry (Process) is the one mechanism the ordered sources (Kinesis,
// DynamoDB Streams, Kafka, DocumentDB) share: MaximumRetryAttempts,
// MaximumRecordAgeInSeconds, BisectBatchOnFunctionError and partial batch
// responses, as spec section 3.4 describes them. Queue sources (SQS,
// RabbitMQ) hand failures back to their broker instead. Which one a source
// is, and everything else specific to it, comes from its
// source.Descriptor: this package names no source.
//
// Run stops in two phases: polling stops at once and records never invoked
// go back to the source (source.ErrStopped); invocations in flight then
// have Runner.DrainTimeout to finish and be acknowledged before they are
// cancelled.
package pipeline
