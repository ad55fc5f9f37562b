package payload

import (
	"encoding/json"
	"strconv"
	"time"
)

// RabbitMQMessage is one AMQP 0-9-1 delivery, the input of AppendRabbitMQ.
// Empty strings and zero times are written as null, as AWS does for absent
// properties.
type RabbitMQMessage struct {
	Properties  RabbitMQProperties
	Redelivered bool
	Data        []byte
}

// RabbitMQProperties are the AMQP basic properties, in AWS's field order.
type RabbitMQProperties struct {
	ContentType     string
	ContentEncoding string
	// Headers in the order the broker sent them; values are raw JSON as
	// AWS writes them: {"bytes":[...]} for byte strings (RabbitMQBytes),
	// plain JSON numbers and booleans otherwise. Nil Headers is null.
	Headers       []RabbitMQHeader
	DeliveryMode  *uint8
	Priority      *uint8
	CorrelationID string
	ReplyTo       string
	Expiration    string
	MessageID     string
	// Timestamp is written in the Java medium date-time format AWS uses,
	// "Jan 1, 1970, 12:33:41 AM" (UTC).
	Timestamp time.Time
	Type      string
	UserID    string
	AppID     string
	ClusterID string
	// BodySize defaults to len(Data) when nil.
	BodySize *int64
}

// RabbitMQHeader is one AMQP header table entry.
type RabbitMQHeader struct {
	Name  string
	Value json.RawMessage
}

// RabbitMQBytes returns the JSON AWS uses for a byte-string header value:
// {"bytes":[118,97,...]} with signed byte values.
func RabbitMQBytes(b []byte) json.RawMessage {
	dst := append(make([]byte, 0, 12+4*len(b)), `{"bytes":[`...)
	dst = AppendSignedBytes(dst, b)
	return append(dst, ']', '}')
}

// RabbitMQGroup returns the key a RabbitMQ message is grouped under in the
// event's "rmqMessagesByQueue" map: "<queue>::<virtualHost>".
func RabbitMQGroup(queue, vhost string) string { return queue + "::" + vhost }

// AppendRabbitMQ appends the RabbitMQ event message:
//
//	{"basicProperties":{"contentType","contentEncoding","headers","deliveryMode","priority","correlationId",
//	 "replyTo","expiration","messageId","timestamp","type","userId","appId","clusterId","bodySize"},
//	 "redelivered","data"}
func AppendRabbitMQ(dst []byte, m *RabbitMQMessage) []byte {
	p := &m.Properties
	dst = append(dst, `{"basicProperties":{"contentType":`...)
	dst = appendStringOrNull(dst, p.ContentType)
	dst = append(dst, `,"contentEncoding":`...)
	dst = appendStringOrNull(dst, p.ContentEncoding)
	dst = append(dst, `,"headers":`...)
	if p.Headers == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '{')
		for i := range p.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, p.Headers[i].Name)
			dst = append(dst, ':')
			if p.Headers[i].Value == nil {
				dst = append(dst, "null"...)
			} else {
				dst = append(dst, p.Headers[i].Value...)
			}
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"deliveryMode":`...)
	dst = appendUint8OrNull(dst, p.DeliveryMode)
	dst = append(dst, `,"priority":`...)
	dst = appendUint8OrNull(dst, p.Priority)
	dst = append(dst, `,"correlationId":`...)
	dst = appendStringOrNull(dst, p.CorrelationID)
	dst = append(dst, `,"replyTo":`...)
	dst = appendStringOrNull(dst, p.ReplyTo)
	dst = append(dst, `,"expiration":`...)
	dst = appendStringOrNull(dst, p.Expiration)
	dst = append(dst, `,"messageId":`...)
	dst = appendStringOrNull(dst, p.MessageID)
	dst = append(dst, `,"timestamp":`...)
	if p.Timestamp.IsZero() {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = p.Timestamp.UTC().AppendFormat(dst, "Jan 2, 2006, 3:04:05 PM")
		dst = append(dst, '"')
	}
	dst = append(dst, `,"type":`...)
	dst = appendStringOrNull(dst, p.Type)
	dst = append(dst, `,"userId":`...)
	dst = appendStringOrNull(dst, p.UserID)
	dst = append(dst, `,"appId":`...)
	dst = appendStringOrNull(dst, p.AppID)
	dst = append(dst, `,"clusterId":`...)
	dst = appendStringOrNull(dst, p.ClusterID)
	dst = append(dst, `,"bodySize":`...)
	if p.BodySize != nil {
		dst = strconv.AppendInt(dst, *p.BodySize, 10)
	} else {
		dst = strconv.AppendInt(dst, int64(len(m.Data)), 10)
	}
	dst = append(dst, `},"redelivered":`...)
	dst = appendBool(dst, m.Redelivered)
	dst = append(dst, `,"data":`...)
	dst = AppendBase64(dst, m.Data)
	return append(dst, '}')
}

func appendUint8OrNull(dst []byte, v *uint8) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendUint(dst, uint64(*v), 10)
}

// ActiveMQMessage is one JMS message, the input of AppendActiveMQ. Empty
// ReplyTo, Type and CorrelationID are written as null.
type ActiveMQMessage struct {
	MessageID     string
	MessageType   string // "jms/text-message" or "jms/bytes-message"
	DeliveryMode  int
	ReplyTo       string
	Type          string
	Expiration    int64 // ms; written as a string, "60000"
	Priority      int
	CorrelationID string
	Redelivered   bool
	Destination   string // physicalName
	Data          []byte
	Timestamp     time.Time
	BrokerInTime  time.Time
	BrokerOutTime time.Time
	// Properties in the broker's order; string values.
	Properties []ActiveMQProperty
}

// ActiveMQProperty is one JMS custom property.
type ActiveMQProperty struct{ Name, Value string }

// AppendActiveMQ appends the Amazon MQ (ActiveMQ) event message in the field
// order of AWS's example (spec 1.6).
func AppendActiveMQ(dst []byte, m *ActiveMQMessage) []byte {
	dst = append(dst, `{"messageID":`...)
	dst = AppendString(dst, m.MessageID)
	dst = append(dst, `,"messageType":`...)
	dst = AppendString(dst, m.MessageType)
	dst = append(dst, `,"deliveryMode":`...)
	dst = strconv.AppendInt(dst, int64(m.DeliveryMode), 10)
	dst = append(dst, `,"replyTo":`...)
	dst = appendStringOrNull(dst, m.ReplyTo)
	dst = append(dst, `,"type":`...)
	dst = appendStringOrNull(dst, m.Type)
	dst = append(dst, `,"expiration":"`...)
	dst = strconv.AppendInt(dst, m.Expiration, 10)
	dst = append(dst, `","priority":`...)
	dst = strconv.AppendInt(dst, int64(m.Priority), 10)
	dst = append(dst, `,"correlationId":`...)
	dst = appendStringOrNull(dst, m.CorrelationID)
	dst = append(dst, `,"redelivered":`...)
	dst = appendBool(dst, m.Redelivered)
	dst = append(dst, `,"destination":{"physicalName":`...)
	dst = AppendString(dst, m.Destination)
	dst = append(dst, `},"data":`...)
	dst = AppendBase64(dst, m.Data)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, m.Timestamp.UnixMilli(), 10)
	dst = append(dst, `,"brokerInTime":`...)
	dst = strconv.AppendInt(dst, m.BrokerInTime.UnixMilli(), 10)
	dst = append(dst, `,"brokerOutTime":`...)
	dst = strconv.AppendInt(dst, m.BrokerOutTime.UnixMilli(), 10)
	dst = append(dst, `,"properties":{`...)
	for i := range m.Properties {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, m.Properties[i].Name)
		dst = append(dst, ':')
		dst = AppendString(dst, m.Properties[i].Value)
	}
	return append(dst, '}', '}')
}

// AppendDocumentDB appends one DocumentDB change event, {"event":<change>},
// where change is the change stream document as relaxed extended JSON
// (passed through verbatim).
func AppendDocumentDB(dst []byte, change json.RawMessage) []byte {
	dst = append(dst, `{"event":`...)
	dst = append(dst, change...)
	return append(dst, '}')
}
