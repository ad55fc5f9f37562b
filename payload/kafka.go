package payload

import (
	"strconv"
	"time"
)

// KafkaRecord is one Kafka record, the input of AppendKafka.
type KafkaRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	// TimestampType is "CREATE_TIME" or "LOG_APPEND_TIME".
	TimestampType string
	// Key is left out of the record when nil (a keyless record); an empty
	// non-nil key is written as "".
	Key     []byte
	Value   []byte
	Headers []KafkaHeader
}

// KafkaHeader is one record header. Kafka allows repeated keys; each header
// is its own single-key object in the "headers" array.
type KafkaHeader struct {
	Key   string
	Value []byte
}

// KafkaGroup returns the key a Kafka record is grouped under in the event's
// "records" map: "<topic>-<partition>".
func KafkaGroup(topic string, partition int32) string {
	return topic + "-" + strconv.FormatInt(int64(partition), 10)
}

// AppendKafka appends the Kafka event record:
//
//	{"topic","partition","offset","timestamp","timestampType","key","value","headers":[{"k":[b,...]}]}
//
// Header values are arrays of signed byte values (-128..127), as AWS sends
// them (Java byte[]).
func AppendKafka(dst []byte, r *KafkaRecord) []byte {
	dst = append(dst, `{"topic":`...)
	dst = AppendString(dst, r.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(r.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, r.Timestamp.UnixMilli(), 10)
	dst = append(dst, `,"timestampType":`...)
	if r.TimestampType == "" {
		dst = append(dst, `"CREATE_TIME"`...)
	} else {
		dst = AppendString(dst, r.TimestampType)
	}
	if r.Key != nil {
		dst = append(dst, `,"key":`...)
		dst = AppendBase64(dst, r.Key)
	}
	dst = append(dst, `,"value":`...)
	dst = AppendBase64(dst, r.Value)
	dst = append(dst, `,"headers":[`...)
	for i := range r.Headers {
		h := &r.Headers[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = AppendString(dst, h.Key)
		dst = append(dst, ':', '[')
		dst = AppendSignedBytes(dst, h.Value)
		dst = append(dst, ']', '}')
	}
	return append(dst, ']', '}')
}

// KafkaSize returns len(AppendKafka(nil, r)) without encoding r.
func KafkaSize(r *KafkaRecord) int {
	n := len(`{"topic":,"partition":,"offset":,"timestamp":,"timestampType":,"value":,"headers":[]}`) +
		StringSize(r.Topic) + intSize(int64(r.Partition)) + intSize(r.Offset) + intSize(r.Timestamp.UnixMilli()) +
		base64Size(len(r.Value))
	if r.TimestampType == "" {
		n += len(`"CREATE_TIME"`)
	} else {
		n += StringSize(r.TimestampType)
	}
	if r.Key != nil {
		n += len(`,"key":`) + base64Size(len(r.Key))
	}
	for i := range r.Headers {
		h := &r.Headers[i]
		if i > 0 {
			n++
		}
		n += len(`{:[]}`) + StringSize(h.Key) + signedBytesSize(h.Value)
	}
	return n
}

// base64Size is the length of AppendBase64's output for n bytes, quotes
// included.
func base64Size(n int) int { return 2 + (n+2)/3*4 }

// intSize is the number of characters of v in base 10.
func intSize(v int64) int {
	n := 1
	if v < 0 {
		n++
		if v == -v { // math.MinInt64
			return 20
		}
		v = -v
	}
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// signedBytesSize returns len(AppendSignedBytes(nil, b)).
func signedBytesSize(b []byte) int {
	n := max(len(b)-1, 0) // commas
	for _, c := range b {
		v := int8(c)
		switch {
		case v <= -100:
			n += 4
		case v <= -10:
			n += 3
		case v < 0:
			n += 2
		case v < 10:
			n++
		case v < 100:
			n += 2
		default:
			n += 3
		}
	}
	return n
}

// AppendSignedBytes appends b as comma separated signed byte values.
func AppendSignedBytes(dst []byte, b []byte) []byte {
	for i, c := range b {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(int8(c)), 10)
	}
	return dst
}
