// Package ddbstreams is a small in-memory DynamoDB Streams server for
// esmd's tests: no DynamoDB Streams emulator can be installed on the
// project's machines (dynalite has no Streams API and DynamoDB Local cannot
// be downloaded), so the poller of DynamoDB Streams mappings is tested
// against this server, spoken to over HTTP by the real
// github.com/aws/aws-sdk-go-v2/service/dynamodbstreams client.
//
// It speaks the AWS JSON 1.0 protocol (X-Amz-Target:
// DynamoDBStreams_20120810.<Operation>) and implements the four operations
// of the API:
//
//   - DescribeStream, with ExclusiveStartShardId/Limit pagination,
//     ShardFilter CHILD_SHARDS, shards with ParentShardId and
//     SequenceNumberRange (EndingSequenceNumber once a shard is closed),
//     StreamStatus, StreamViewType, KeySchema, TableName, StreamLabel;
//   - GetShardIterator: TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER,
//     AFTER_SEQUENCE_NUMBER; iterators expire after 15 minutes
//     (ExpiredIteratorException);
//   - GetRecords: Limit up to 1000; no NextShardIterator once a closed
//     shard is read to its end; TrimmedDataAccessException for a position
//     the server trimmed;
//   - ListStreams, with TableName, Limit and ExclusiveStartStreamArn.
//
// Unknown streams and shards are a ResourceNotFoundException with AWS's
// messages ("Requested resource not found: Stream: <arn> not found",
// "Requested resource not found: Shard does not exist").
//
// Tests write to a stream with Server.Put (INSERT/MODIFY/REMOVE records
// with the SDK's AttributeValue types), route records to shards by a hash
// of the item key (each open shard owns a hash range, as DynamoDB
// partitions do), split or roll over a shard with Server.Split (the
// parent closes, its children carry ParentShardId and share its range),
// disable a stream and trim old records. Start it with Start and stop it
// with Close; it listens on 127.0.0.1 only.
//
// What the server does not model: table writes (records are appended
// directly), retention expiry (only explicit Trim), per-shard throughput
// limits, and request signing (any credentials are accepted).
package ddbstreams
