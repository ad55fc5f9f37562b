// Package kafka is the poller of Amazon MSK and self-managed Apache Kafka
// event source mappings, built on franz-go's kgo.
//
// The poller is one member of the mapping's consumer group (ConsumerGroupId,
// which defaults to the mapping's UUID) using cooperative-sticky
// rebalancing. It hands the pipeline one source.Record per Kafka record,
// laned by "topic-partition", which encodes itself as the record of the
// Lambda Kafka event (payload.AppendKafka) when its batch's event is
// written (source.Record.Encoder). Offsets are committed only
// below every record the pipeline has not finished (source.Tracker), so a
// restart or a rebalance re-reads unfinished records and never skips one.
//
// Hand-outs: the records kgo fetches are held by the poller and handed to
// the pipeline a few batches at a time per partition (Config.MaxOutstanding:
// three batches, or up to 1,000 records when batches are small; one in
// flight, the next ones ready). When the partitions hold enough fetched
// records the poller stops polling kgo, and a partition holding twice its
// share, and at least two of its fetches, is paused in kgo until the
// pipeline catches up (a pause drops what kgo buffered of it, decoded
// already, and the broker sends it again). A hand-out only
// counts: encoding happens in the goroutines that invoke the batches, in
// parallel across partitions, straight into each event.
//
// Commits and restarts: a batch's offsets are committed as soon as it is
// done, while its partition's next batch is invoked; while batches finish
// less than 20 ms apart, one OffsetCommit every 20 ms carries every mark
// that moved meanwhile (a commit per batch cost about as much CPU, in esmd
// and in the broker, as the rest of a record's work). A batch's Done
// returns only once its partition has at most 8 finished batches
// uncommitted, so a crash redelivers at most MaxRedeliveredBatches (9)
// batches per partition; at a trickle, each batch is committed before the
// next finishes. Each worker is a static member of the group
// (Config.InstanceID, KIP-345: the worker's id, kept in its --data-dir by
// internal/workerid, and the mapping's UUID): a worker restarted after a SIGKILL takes its place and
// its partitions back at once, where a dynamic member would wait for the
// group to expire the dead one's session. Close leaves the group with its
// instance id, so a mapping that stops hands over at once too. Measured
// with the real binary (TestKafkaSIGKILLRestart, 3 partitions, BatchSize 5):
// the restart went from about 10 s to about 0.3 s, and the duplicates from
// everything delivered before the kill (120) to the batches in flight and
// uncommitted (15 with a commit before each next batch).
//
// Revoked partitions: the held records are dropped at once (the pipeline
// never saw them), the poller waits (up to Config.RevokeTimeout) for the
// few records handed out to finish, commits what finished, and abandons the
// rest without committing; the new owner reads them again. Because the
// pipeline holds at most MaxOutstanding records of a partition, the wait
// is a few invocations long (20 at most) and a revocation normally hands
// over without any duplicate. Records fetched after the revocation are dropped before
// the pipeline sees them, and late outcomes of abandoned records are
// ignored, so a partition that comes back is tracked from scratch.
//
// Provisioned mode: ProvisionedPollerConfig.MaximumPollers
// (Config.MaxPollers) bounds how many partitions have records in the
// pipeline at once, hence the concurrent invocations of one esmd worker;
// partitions take turns of MaxOutstanding records. MinimumPollers needs
// nothing: esmd never runs fewer consumers than partitions with records.
//
// OffsetLag reports, per owned partition, the high watermark of the last
// fetch minus the next offset to commit (the pipeline reads OffsetLag() for its metrics).
//
// ConfigFor turns a mapping into a Config: bootstrap servers (the
// SelfManagedEventSource; for MSK, --msk-cluster ARN=brokers or else
// kafka:GetBootstrapBrokers), SASL/PLAIN, SASL/SCRAM-SHA-256/512, mTLS
// client certificates and a server root CA from SourceAccessConfigurations,
// with the secrets resolved by internal/secrets, and MSK IAM (AWS_MSK_IAM)
// for a looked-up MSK cluster when the mapping names no secret. Secret
// values never reach logs or errors.
//
// Tests run against kfake, franz-go's in-process Kafka (the real protocol),
// started once per test package by internal/testenv; ESMD_KAFKA_SEEDS=
// host:port,... runs the shared suites (conformance, record shape, commits,
// starting positions, rebalance, pipeline) against a real cluster instead.
// TestThroughput compares esmd with a plain franz-go loop when
// ESMD_KAFKA_BENCH=<records> is set.
package kafka
