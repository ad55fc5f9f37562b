package payload

import (
	"encoding/json"
	"strconv"
	"time"
)

// KinesisRecord is one Kinesis record, the input of AppendKinesis.
type KinesisRecord struct {
	ShardID                     string
	PartitionKey                string
	SequenceNumber              string
	Data                        []byte
	ApproximateArrivalTimestamp time.Time
	// EncryptionType is "KMS" for server-side encrypted records; left out
	// when empty.
	EncryptionType string
	// InvokeIdentityArn is the function's execution role ARN.
	InvokeIdentityArn string
	AWSRegion         string
	EventSourceARN    string
}

// AppendKinesis appends the Kinesis event record:
//
//	{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey","sequenceNumber","data","approximateArrivalTimestamp"},
//	 "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"<shardId>:<seq>","eventName":"aws:kinesis:record",
//	 "invokeIdentityArn","awsRegion","eventSourceARN"}
//
// encryptionType, when set, follows approximateArrivalTimestamp (AWS shows
// no example with it; this is the position in the aws-lambda-go type).
func AppendKinesis(dst []byte, r *KinesisRecord) []byte {
	dst = append(dst, `{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":`...)
	dst = AppendString(dst, r.PartitionKey)
	dst = append(dst, `,"sequenceNumber":`...)
	dst = AppendString(dst, r.SequenceNumber)
	dst = append(dst, `,"data":`...)
	dst = AppendBase64(dst, r.Data)
	dst = append(dst, `,"approximateArrivalTimestamp":`...)
	dst = AppendEpochSeconds(dst, r.ApproximateArrivalTimestamp)
	if r.EncryptionType != "" {
		dst = append(dst, `,"encryptionType":`...)
		dst = AppendString(dst, r.EncryptionType)
	}
	dst = append(dst, `},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"`...)
	dst = appendEscaped(dst, r.ShardID)
	dst = append(dst, ':')
	dst = appendEscaped(dst, r.SequenceNumber)
	dst = append(dst, `","eventName":"aws:kinesis:record","invokeIdentityArn":`...)
	dst = AppendString(dst, r.InvokeIdentityArn)
	dst = append(dst, `,"awsRegion":`...)
	dst = AppendString(dst, r.AWSRegion)
	dst = append(dst, `,"eventSourceARN":`...)
	dst = AppendString(dst, r.EventSourceARN)
	return append(dst, '}')
}

// DynamoDBRecord is one DynamoDB Streams record, the input of
// AppendDynamoDB. Keys, NewImage and OldImage are DynamoDB typed JSON
// (AttributeValue maps, {"Id":{"N":"101"}}) passed through verbatim; nil
// images are left out. They must be valid compact JSON.
type DynamoDBRecord struct {
	EventID   string
	EventName string // INSERT, MODIFY, REMOVE
	// EventVersion defaults to "1.1", the value in the recordings.
	EventVersion string
	AWSRegion    string
	// UserIdentity is set for TTL deletes:
	// {"type":"Service","principalId":"dynamodb.amazonaws.com"}. Raw JSON,
	// left out when nil.
	UserIdentity json.RawMessage

	ApproximateCreationDateTime time.Time
	Keys                        json.RawMessage
	NewImage                    json.RawMessage
	OldImage                    json.RawMessage
	SequenceNumber              string
	SizeBytes                   int64
	StreamViewType              string // KEYS_ONLY, NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES

	EventSourceARN string
}

// AppendDynamoDB appends the DynamoDB Streams event record:
//
//	{"eventID","eventName","eventVersion","eventSource":"aws:dynamodb","awsRegion",["userIdentity",]
//	 "dynamodb":{"ApproximateCreationDateTime","Keys","NewImage","OldImage","SequenceNumber","SizeBytes","StreamViewType"},
//	 "eventSourceARN"}
func AppendDynamoDB(dst []byte, r *DynamoDBRecord) []byte {
	dst = append(dst, `{"eventID":`...)
	dst = AppendString(dst, r.EventID)
	dst = append(dst, `,"eventName":`...)
	dst = AppendString(dst, r.EventName)
	dst = append(dst, `,"eventVersion":`...)
	if r.EventVersion == "" {
		dst = append(dst, `"1.1"`...)
	} else {
		dst = AppendString(dst, r.EventVersion)
	}
	dst = append(dst, `,"eventSource":"aws:dynamodb","awsRegion":`...)
	dst = AppendString(dst, r.AWSRegion)
	if r.UserIdentity != nil {
		dst = append(dst, `,"userIdentity":`...)
		dst = append(dst, r.UserIdentity...)
	}
	dst = append(dst, `,"dynamodb":{`...)
	if !r.ApproximateCreationDateTime.IsZero() {
		dst = append(dst, `"ApproximateCreationDateTime":`...)
		dst = AppendEpochSeconds(dst, r.ApproximateCreationDateTime)
		dst = append(dst, ',')
	}
	dst = append(dst, `"Keys":`...)
	if r.Keys == nil {
		dst = append(dst, '{', '}')
	} else {
		dst = append(dst, r.Keys...)
	}
	if r.NewImage != nil {
		dst = append(dst, `,"NewImage":`...)
		dst = append(dst, r.NewImage...)
	}
	if r.OldImage != nil {
		dst = append(dst, `,"OldImage":`...)
		dst = append(dst, r.OldImage...)
	}
	dst = append(dst, `,"SequenceNumber":`...)
	dst = AppendString(dst, r.SequenceNumber)
	dst = append(dst, `,"SizeBytes":`...)
	dst = strconv.AppendInt(dst, r.SizeBytes, 10)
	dst = append(dst, `,"StreamViewType":`...)
	dst = AppendString(dst, r.StreamViewType)
	dst = append(dst, `},"eventSourceARN":`...)
	dst = AppendString(dst, r.EventSourceARN)
	return append(dst, '}')
}
