package payload

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sort"
	"strings"
)

// SQSMessage is one message as received from SQS, the input of AppendSQS.
type SQSMessage struct {
	MessageID     string
	ReceiptHandle string
	Body          string
	Attributes    SQSAttributes
	// MessageAttributes in any order; the encoder orders them as AWS does.
	MessageAttributes []SQSMessageAttribute
	// MD5OfBody is the hex MD5 of Body as ReceiveMessage returned it. When
	// empty it is computed.
	MD5OfBody string
	// MD5OfMessageAttributes as ReceiveMessage returned it. When empty and
	// there are message attributes it is computed with SQS's algorithm. The
	// field is left out of the record when there are no message attributes
	// (as in the recordings).
	MD5OfMessageAttributes string
	EventSourceARN         string
	AWSRegion              string
}

// SQSAttributes are the message system attributes. The four standard ones
// are always written; the others only when non-empty.
type SQSAttributes struct {
	ApproximateReceiveCount          string
	SentTimestamp                    string
	SenderID                         string
	ApproximateFirstReceiveTimestamp string
	// FIFO queues.
	SequenceNumber         string
	MessageGroupID         string
	MessageDeduplicationID string
	// Optional.
	AWSTraceHeader           string
	DeadLetterQueueSourceArn string
}

// SQSMessageAttribute is one user message attribute. DataType is "String",
// "Number", "Binary" or a custom type such as "String.foo"; StringValue is
// used for String and Number types, BinaryValue for Binary types.
type SQSMessageAttribute struct {
	Name             string
	DataType         string
	StringValue      string
	BinaryValue      []byte
	StringListValues []string
	BinaryListValues [][]byte
}

func (a *SQSMessageAttribute) isBinary() bool { return strings.HasPrefix(a.DataType, "Binary") }

type sqsAttr struct {
	name  string
	value func(*SQSAttributes) string
	// always: written even when empty.
	always bool
}

// sqsAttrOrder is the system attributes in java.util.HashMap order (see
// hashorder.go); ties broken by SQS's alphabetical insertion order.
var sqsAttrOrder = func() []sqsAttr {
	attrs := []sqsAttr{
		{"AWSTraceHeader", func(a *SQSAttributes) string { return a.AWSTraceHeader }, false},
		{"ApproximateFirstReceiveTimestamp", func(a *SQSAttributes) string { return a.ApproximateFirstReceiveTimestamp }, true},
		{"ApproximateReceiveCount", func(a *SQSAttributes) string { return a.ApproximateReceiveCount }, true},
		{"DeadLetterQueueSourceArn", func(a *SQSAttributes) string { return a.DeadLetterQueueSourceArn }, false},
		{"MessageDeduplicationId", func(a *SQSAttributes) string { return a.MessageDeduplicationID }, false},
		{"MessageGroupId", func(a *SQSAttributes) string { return a.MessageGroupID }, false},
		{"SenderId", func(a *SQSAttributes) string { return a.SenderID }, true},
		{"SentTimestamp", func(a *SQSAttributes) string { return a.SentTimestamp }, true},
		{"SequenceNumber", func(a *SQSAttributes) string { return a.SequenceNumber }, false},
	}
	// At most 9 keys: the table size is always 16.
	sort.SliceStable(attrs, func(i, j int) bool {
		return hashMapBucket(attrs[i].name, 16) < hashMapBucket(attrs[j].name, 16)
	})
	return attrs
}()

// AppendSQS appends the SQS event record for m:
//
//	{"messageId","receiptHandle","body","attributes":{...},"messageAttributes":{...},
//	 "md5OfMessageAttributes","md5OfBody","eventSource":"aws:sqs","eventSourceARN","awsRegion"}
func AppendSQS(dst []byte, m *SQSMessage) []byte {
	dst = append(dst, `{"messageId":`...)
	dst = AppendString(dst, m.MessageID)
	dst = append(dst, `,"receiptHandle":`...)
	dst = AppendString(dst, m.ReceiptHandle)
	dst = append(dst, `,"body":`...)
	dst = AppendString(dst, m.Body)
	dst = append(dst, `,"attributes":{`...)
	first := true
	for i := range sqsAttrOrder {
		a := &sqsAttrOrder[i]
		v := a.value(&m.Attributes)
		if v == "" && !a.always {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, a.name...)
		dst = append(dst, '"', ':')
		dst = AppendString(dst, v)
	}
	dst = append(dst, `},"messageAttributes":{`...)
	if n := len(m.MessageAttributes); n > 0 {
		var buf [16]int
		idx := sqsAttrIndex(m.MessageAttributes, buf[:0])
		for k, i := range idx {
			a := &m.MessageAttributes[i]
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, a.Name)
			dst = append(dst, ':', '{')
			if a.isBinary() {
				dst = append(dst, `"binaryValue":`...)
				dst = AppendBase64(dst, a.BinaryValue)
			} else {
				dst = append(dst, `"stringValue":`...)
				dst = AppendString(dst, a.StringValue)
			}
			dst = append(dst, `,"stringListValues":[`...)
			for j, s := range a.StringListValues {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = AppendString(dst, s)
			}
			dst = append(dst, `],"binaryListValues":[`...)
			for j, b := range a.BinaryListValues {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = AppendBase64(dst, b)
			}
			dst = append(dst, `],"dataType":`...)
			dst = AppendString(dst, a.DataType)
			dst = append(dst, '}')
		}
		dst = append(dst, `},"md5OfMessageAttributes":`...)
		if m.MD5OfMessageAttributes != "" {
			dst = AppendString(dst, m.MD5OfMessageAttributes)
		} else {
			sum := MD5OfMessageAttributes(m.MessageAttributes)
			dst = append(dst, '"')
			dst = append(dst, sum...)
			dst = append(dst, '"')
		}
	} else {
		dst = append(dst, '}')
	}
	dst = append(dst, `,"md5OfBody":`...)
	if m.MD5OfBody != "" {
		dst = AppendString(dst, m.MD5OfBody)
	} else {
		sum := md5.Sum([]byte(m.Body))
		dst = append(dst, '"')
		dst = hex.AppendEncode(dst, sum[:])
		dst = append(dst, '"')
	}
	dst = append(dst, `,"eventSource":"aws:sqs","eventSourceARN":`...)
	dst = AppendString(dst, m.EventSourceARN)
	dst = append(dst, `,"awsRegion":`...)
	dst = AppendString(dst, m.AWSRegion)
	return append(dst, '}')
}

// sqsAttrIndex returns the indexes of attrs in the order AWS writes them:
// inserted by name (SQS returns them sorted), iterated in HashMap order.
func sqsAttrIndex(attrs []SQSMessageAttribute, idx []int) []int {
	for i := range attrs {
		idx = append(idx, i)
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(attrs[a].Name, attrs[b].Name) })
	javaHashMapOrder(func(i int) string { return attrs[i].Name }, idx)
	return idx
}

// MD5OfMessageAttributes computes the hex MD5 digest SQS reports for a set
// of message attributes: attributes sorted by name, each encoded as
// length-prefixed (4-byte big-endian) name and data type, a transport byte
// (1 string, 2 binary, 3 string list, 4 binary list) and the length-prefixed
// value(s).
func MD5OfMessageAttributes(attrs []SQSMessageAttribute) string {
	if len(attrs) == 0 {
		return ""
	}
	idx := make([]int, len(attrs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(attrs[a].Name, attrs[b].Name) })
	h := md5.New()
	var lenBuf [4]byte
	putBytes := func(b []byte) {
		binary.BigEndian.PutUint32(lenBuf[:], uint32(len(b)))
		h.Write(lenBuf[:])
		h.Write(b)
	}
	putString := func(s string) { putBytes([]byte(s)) }
	for _, i := range idx {
		a := &attrs[i]
		putString(a.Name)
		putString(a.DataType)
		switch {
		case len(a.StringListValues) > 0:
			h.Write([]byte{3})
			for _, s := range a.StringListValues {
				putString(s)
			}
		case len(a.BinaryListValues) > 0:
			h.Write([]byte{4})
			for _, b := range a.BinaryListValues {
				putBytes(b)
			}
		case a.isBinary():
			h.Write([]byte{2})
			putBytes(a.BinaryValue)
		default:
			h.Write([]byte{1})
			putString(a.StringValue)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
