package destination

import (
	"strconv"
	"time"

	"github.com/esmd/esmd/payload"
)

// Condition is why records were sent to the destination.
type Condition string

// Conditions (requestContext.condition).
const (
	// RetryAttemptsExhausted: MaximumRetryAttempts was used up.
	RetryAttemptsExhausted Condition = "RetryAttemptsExhausted"
	// RecordAgeExceeded: the records passed MaximumRecordAgeInSeconds
	// (AWS does not document the string; it is the one observed on real
	// destination objects and used by LocalStack).
	RecordAgeExceeded Condition = "RecordAgeExceeded"
	// MaximumPayloadSizeExceeded (Kafka): a record could never fit in an
	// invocation payload.
	MaximumPayloadSizeExceeded Condition = "MaximumPayloadSizeExceeded"
)

// ResponseContext is the last invocation's answer.
type ResponseContext struct {
	StatusCode      int
	ExecutedVersion string
	// FunctionError is "Unhandled" or "Handled"; "" is written as null (a
	// partial batch failure: the function returned normally).
	FunctionError string
}

// BatchInfo is a source's part of an OnFailure record: the discarded
// records as the source describes them. A source's descriptor builds it
// (source.Descriptor.FailureInfo), and the source's package defines the
// shape AWS writes for it.
type BatchInfo interface {
	// AppendMember appends the member, name and value:
	// "KinesisBatchInfo":{...}.
	AppendMember(dst []byte) []byte
	// Lane returns the S3 key's shard component: the shard id, or the
	// "<topic>-<partition>" of the first partition.
	Lane() string
}

// Record is one OnFailure invocation record.
type Record struct {
	RequestID              string
	FunctionARN            string
	Condition              Condition
	ApproximateInvokeCount int
	// Response is the last invocation's answer. Nil leaves responseContext
	// out (RecordAgeExceeded, as recorded on AWS), unless NullResponse is
	// set.
	Response *ResponseContext
	// NullResponse writes "responseContext":null when Response is nil
	// (Kafka MaximumPayloadSizeExceeded).
	NullResponse bool
	Timestamp    time.Time

	// Info is the source's description of the records (nil: none).
	Info BatchInfo

	// Payload is the invocation event of the discarded records. Only the S3
	// destination (and the Kafka topic destination) carries it.
	Payload []byte
	// Lane is the shard id or "<topic>-<partition>" used in the S3 key.
	// Defaults to the shard id of the batch info.
	Lane string
	// Key is the Kafka record key used as the message key by the Kafka
	// topic destination (nil: round-robin).
	Key []byte
}

// PayloadMode says whether and how AppendJSON writes "payload".
type PayloadMode uint8

const (
	// PayloadNone: metadata only (SQS and SNS destinations).
	PayloadNone PayloadMode = iota
	// PayloadString: "payload" as the event serialized into a JSON string
	// (S3; spec STR-41 "escaped JSON").
	PayloadString
	// PayloadObject: "payload" as the event object itself (the Kafka topic
	// destination, spec KAF-16).
	PayloadObject
)

// AppendJSON appends the record as AWS writes it:
//
//	{"requestContext":{"requestId","functionArn","condition","approximateInvokeCount"},
//	 "responseContext":{"statusCode","executedVersion","functionError"},
//	 "version":"1.0","timestamp":"...Z","KinesisBatchInfo":{...}[,"payload":...]}
func (r *Record) AppendJSON(dst []byte, mode PayloadMode) []byte {
	dst = append(dst, `{"requestContext":{"requestId":`...)
	dst = payload.AppendString(dst, r.RequestID)
	dst = append(dst, `,"functionArn":`...)
	dst = payload.AppendString(dst, r.FunctionARN)
	dst = append(dst, `,"condition":`...)
	dst = payload.AppendString(dst, string(r.Condition))
	dst = append(dst, `,"approximateInvokeCount":`...)
	dst = strconv.AppendInt(dst, int64(r.ApproximateInvokeCount), 10)
	dst = append(dst, '}')
	switch {
	case r.Response != nil:
		dst = append(dst, `,"responseContext":{"statusCode":`...)
		dst = strconv.AppendInt(dst, int64(r.Response.StatusCode), 10)
		dst = append(dst, `,"executedVersion":`...)
		v := r.Response.ExecutedVersion
		if v == "" {
			v = "$LATEST"
		}
		dst = payload.AppendString(dst, v)
		dst = append(dst, `,"functionError":`...)
		if r.Response.FunctionError == "" {
			dst = append(dst, "null"...)
		} else {
			dst = payload.AppendString(dst, r.Response.FunctionError)
		}
		dst = append(dst, '}')
	case r.NullResponse:
		dst = append(dst, `,"responseContext":null`...)
	}
	dst = append(dst, `,"version":"1.0","timestamp":`...)
	dst = payload.AppendISOMillis(dst, r.Timestamp)
	if r.Info != nil {
		dst = append(dst, ',')
		dst = r.Info.AppendMember(dst)
	}
	switch mode {
	case PayloadString:
		dst = append(dst, `,"payload":`...)
		dst = payload.AppendString(dst, r.Payload)
	case PayloadObject:
		dst = append(dst, `,"payload":`...)
		if len(r.Payload) == 0 {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, r.Payload...)
		}
	}
	return append(dst, '}')
}

// JSON returns AppendJSON(nil, mode).
func (r *Record) JSON(mode PayloadMode) []byte { return r.AppendJSON(nil, mode) }

// lane returns the S3 key's shard component.
func (r *Record) lane() string {
	if r.Lane != "" {
		return r.Lane
	}
	if r.Info != nil && r.Info.Lane() != "" {
		return r.Info.Lane()
	}
	return "unknown"
}
