package kafka

import (
	"strconv"
	"time"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/payload"
)

// BatchInfo is the KafkaBatchInfo of an OnFailure record
// (destination.BatchInfo): the discarded Kafka records.
type BatchInfo struct {
	BatchSize        int
	EventSourceARN   string // left out when empty (self-managed Kafka)
	BootstrapServers string
	// PayloadSize is the size of the invocation event in bytes.
	PayloadSize int
	// RecordsInfo is written as "recordsInfo", one entry per
	// topic-partition (SQS, SNS, S3 destinations).
	RecordsInfo []PartitionInfo
	// RecordInfo, for the Kafka topic destination (one record per
	// message), is written as "recordInfo" instead of RecordsInfo.
	RecordInfo *RecordInfo
}

// PartitionInfo is one "recordsInfo" entry.
type PartitionInfo struct {
	Partition            string // "<topic>-<partition>"
	FirstRecordOffset    int64
	LastRecordOffset     int64
	FirstRecordTimestamp time.Time
	LastRecordTimestamp  time.Time
}

// RecordInfo is the "recordInfo" of a Kafka topic destination message.
type RecordInfo struct {
	Offset    int64
	Timestamp time.Time
}

// AppendMember implements destination.BatchInfo: "KafkaBatchInfo":{...}.
func (k *BatchInfo) AppendMember(dst []byte) []byte {
	dst = append(dst, `"KafkaBatchInfo":{"batchSize":`...)
	dst = strconv.AppendInt(dst, int64(k.BatchSize), 10)
	if k.EventSourceARN != "" {
		dst = append(dst, `,"eventSourceArn":`...)
		dst = payload.AppendString(dst, k.EventSourceARN)
	}
	dst = append(dst, `,"bootstrapServers":`...)
	dst = payload.AppendString(dst, k.BootstrapServers)
	dst = append(dst, `,"payloadSize":`...)
	dst = strconv.AppendInt(dst, int64(k.PayloadSize), 10)
	if k.RecordInfo != nil {
		dst = append(dst, `,"recordInfo":{"offset":"`...)
		dst = strconv.AppendInt(dst, k.RecordInfo.Offset, 10)
		dst = append(dst, `","timestamp":`...)
		dst = payload.AppendISOMillis(dst, k.RecordInfo.Timestamp)
		return append(dst, '}', '}')
	}
	dst = append(dst, `,"recordsInfo":{`...)
	for i := range k.RecordsInfo {
		p := &k.RecordsInfo[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = payload.AppendString(dst, p.Partition)
		dst = append(dst, `:{"firstRecordOffset":"`...)
		dst = strconv.AppendInt(dst, p.FirstRecordOffset, 10)
		dst = append(dst, `","lastRecordOffset":"`...)
		dst = strconv.AppendInt(dst, p.LastRecordOffset, 10)
		dst = append(dst, `","firstRecordTimestamp":`...)
		dst = payload.AppendISOMillis(dst, p.FirstRecordTimestamp)
		dst = append(dst, `,"lastRecordTimestamp":`...)
		dst = payload.AppendISOMillis(dst, p.LastRecordTimestamp)
		dst = append(dst, '}')
	}
	return append(dst, '}', '}')
}

// Lane implements destination.BatchInfo: the "<topic>-<partition>" of the
// first partition.
func (k *BatchInfo) Lane() string {
	if len(k.RecordsInfo) > 0 {
		return k.RecordsInfo[0].Partition
	}
	return ""
}

var _ destination.BatchInfo = (*BatchInfo)(nil)
