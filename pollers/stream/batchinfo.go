package stream

import (
	"strconv"
	"time"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/payload"
)

// Members of an OnFailure record that name a stream's BatchInfo.
const (
	KinesisBatchInfo   = "KinesisBatchInfo"
	DDBStreamBatchInfo = "DDBStreamBatchInfo"
)

// BatchInfo is the KinesisBatchInfo / DDBStreamBatchInfo of an OnFailure
// record (destination.BatchInfo): the discarded range of one shard.
type BatchInfo struct {
	// Member is the member name (KinesisBatchInfo, DDBStreamBatchInfo).
	Member string
	// Seconds writes the arrival times with second precision (DynamoDB
	// Streams) rather than milliseconds (Kinesis).
	Seconds bool

	ShardID                         string
	StartSequenceNumber             string
	EndSequenceNumber               string
	ApproximateArrivalOfFirstRecord time.Time
	ApproximateArrivalOfLastRecord  time.Time
	BatchSize                       int
	StreamARN                       string
}

var _ destination.BatchInfo = (*BatchInfo)(nil)

// AppendMember implements destination.BatchInfo: "<Member>":{...}.
func (b *BatchInfo) AppendMember(dst []byte) []byte {
	ts := payload.AppendISOMillis
	if b.Seconds {
		ts = payload.AppendISOSeconds
	}
	dst = payload.AppendString(dst, b.Member)
	dst = append(dst, `:{"shardId":`...)
	dst = payload.AppendString(dst, b.ShardID)
	dst = append(dst, `,"startSequenceNumber":`...)
	dst = payload.AppendString(dst, b.StartSequenceNumber)
	dst = append(dst, `,"endSequenceNumber":`...)
	dst = payload.AppendString(dst, b.EndSequenceNumber)
	dst = append(dst, `,"approximateArrivalOfFirstRecord":`...)
	dst = ts(dst, b.ApproximateArrivalOfFirstRecord)
	dst = append(dst, `,"approximateArrivalOfLastRecord":`...)
	dst = ts(dst, b.ApproximateArrivalOfLastRecord)
	dst = append(dst, `,"batchSize":`...)
	dst = strconv.AppendInt(dst, int64(b.BatchSize), 10)
	dst = append(dst, `,"streamArn":`...)
	dst = payload.AppendString(dst, b.StreamARN)
	return append(dst, '}')
}

// Lane implements destination.BatchInfo: the shard id.
func (b *BatchInfo) Lane() string { return b.ShardID }
