// Package kafka is the poller of Amazon MSK and self-managed Apache Kafka
// event source mappings, built on franz-go's kgo.
//
// The poller is one member of the mapping's consumer group (ConsumerGroupId,
// which defaults to the mapping's UUID) using cooperative-sticky
// rebalancing. It hands the pipeline one source.Record per Kafka record,
// laned by "topic-partition" and already encoded as the record of the
// Lambda Kafka event (payload.AppendKafka). Offsets are committed only
// below every record the pipeline has not finished (source.Tracker), so a
// restart or a rebalance re-reads unfinished records and never skips one.
//
// Revoked partitions: the poller waits (up to Config.RevokeTimeout) for the
// pipeline to finish the partition's records, commits what finished, and
// abandons the rest without committing; the new owner reads them again.
// Records read from a partition after it was revoked are dropped before
// the pipeline sees them, and late outcomes of abandoned records are
// ignored, so a partition that comes back is tracked from scratch.
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
