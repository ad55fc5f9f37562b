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

// KinesisSize returns len(AppendKinesis(nil, r)) without encoding r.
func KinesisSize(r *KinesisRecord) int {
	n := len(`{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":,"sequenceNumber":,"data":,"approximateArrivalTimestamp":`+
		`},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":":","eventName":"aws:kinesis:record",`+
		`"invokeIdentityArn":,"awsRegion":,"eventSourceARN":}`) +
		StringSize(r.PartitionKey) + 2*StringSize(r.SequenceNumber) - 2 + base64Size(len(r.Data)) +
		epochSecondsSize(r.ApproximateArrivalTimestamp) + StringSize(r.ShardID) - 2 +
		StringSize(r.InvokeIdentityArn) + StringSize(r.AWSRegion) + StringSize(r.EventSourceARN)
	if r.EncryptionType != "" {
		n += len(`,"encryptionType":`) + StringSize(r.EncryptionType)
	}
	return n
}

// epochSecondsSize returns len(AppendEpochSeconds(nil, t)).
func epochSecondsSize(t time.Time) int {
	var b [32]byte
	return len(AppendEpochSeconds(b[:0], t))
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

	// Images, when not nil, writes NewImage and OldImage straight into the
	// record on demand, in place of the NewImage and OldImage fields
	// (ignored then): a poller that holds the images in another form
	// encodes them without a buffer of their own.
	Images DynamoDBImages
}

// DynamoDBImages writes a record's images on demand (DynamoDBRecord.Images).
type DynamoDBImages interface {
	// AppendImage appends NewImage (old false) or OldImage (old true) as
	// compact typed JSON, and reports false, appending nothing, when the
	// record has no such image.
	AppendImage(dst []byte, old bool) ([]byte, bool)
}

// DynamoDBSize returns len(AppendDynamoDB(nil, r)) without encoding r, for
// a record whose NewImage and OldImage encode in newImage and oldImage
// bytes (negative: the record has none). Without Images, pass
// len(r.NewImage) or -1 when it is nil, and so for OldImage.
func DynamoDBSize(r *DynamoDBRecord, newImage, oldImage int) int {
	n := len(`{"eventID":,"eventName":,"eventVersion":,"eventSource":"aws:dynamodb","awsRegion":,"dynamodb":{"Keys":`+
		`,"SequenceNumber":,"SizeBytes":,"StreamViewType":},"eventSourceARN":}`) +
		StringSize(r.EventID) + StringSize(r.EventName) + StringSize(r.AWSRegion) +
		StringSize(r.SequenceNumber) + intSize(r.SizeBytes) + StringSize(r.StreamViewType) + StringSize(r.EventSourceARN)
	if r.EventVersion == "" {
		n += len(`"1.1"`)
	} else {
		n += StringSize(r.EventVersion)
	}
	if r.UserIdentity != nil {
		n += len(`,"userIdentity":`) + len(r.UserIdentity)
	}
	if !r.ApproximateCreationDateTime.IsZero() {
		var buf [32]byte
		n += len(`"ApproximateCreationDateTime":,`) + len(AppendEpochSeconds(buf[:0], r.ApproximateCreationDateTime))
	}
	if r.Keys == nil {
		n += 2
	} else {
		n += len(r.Keys)
	}
	if newImage >= 0 {
		n += len(`,"NewImage":`) + newImage
	}
	if oldImage >= 0 {
		n += len(`,"OldImage":`) + oldImage
	}
	return n
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
	switch {
	case r.Images != nil:
		dst = appendImage(dst, `,"NewImage":`, r.Images, false)
		dst = appendImage(dst, `,"OldImage":`, r.Images, true)
	default:
		if r.NewImage != nil {
			dst = append(dst, `,"NewImage":`...)
			dst = append(dst, r.NewImage...)
		}
		if r.OldImage != nil {
			dst = append(dst, `,"OldImage":`...)
			dst = append(dst, r.OldImage...)
		}
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

// appendImage appends label and one of img's images, or nothing when the
// record has no such image.
func appendImage(dst []byte, label string, img DynamoDBImages, old bool) []byte {
	n := len(dst)
	dst, ok := img.AppendImage(append(dst, label...), old)
	if !ok {
		return dst[:n]
	}
	return dst
}
