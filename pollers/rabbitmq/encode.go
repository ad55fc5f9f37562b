package rabbitmq

import (
	"encoding/json"
	"math"
	"math/big"
	"sort"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/payload"
)

// properties converts a delivery's basic properties to the event's
// basicProperties.
//
// amqp091 does not say which optional properties were present, so a zero
// value is written as null: no content type, delivery mode 0 (not a valid
// mode), priority 0 (indistinguishable from an absent priority), a zero
// timestamp. cluster-id is not exposed by amqp091 (it is deprecated in
// 0-9-1) and is always null. Headers come out sorted by name: amqp091
// decodes the header table into a map, and AWS's own order is that of a
// Java map, which no client can rely on.
func properties(d *amqp.Delivery) payload.RabbitMQProperties {
	p := payload.RabbitMQProperties{
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		CorrelationID:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageID:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		UserID:          d.UserId,
		AppID:           d.AppId,
	}
	if d.DeliveryMode != 0 {
		m := d.DeliveryMode
		p.DeliveryMode = &m
	}
	if d.Priority != 0 {
		pr := d.Priority
		p.Priority = &pr
	}
	if d.Headers != nil {
		p.Headers = headers(d.Headers)
	}
	return p
}

func headers(t amqp.Table) []payload.RabbitMQHeader {
	names := make([]string, 0, len(t))
	for k := range t {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]payload.RabbitMQHeader, len(names))
	for i, k := range names {
		out[i] = payload.RabbitMQHeader{Name: k, Value: headerValue(t[k])}
	}
	return out
}

// headerValue writes a header table value as AWS does (its poller is the
// RabbitMQ Java client serialized with Gson): long strings and byte arrays
// as {"bytes":[...]} (a Java LongString is a byte array), numbers and
// booleans as JSON literals, nested tables as objects, arrays as arrays, a
// timestamp as a Java Date ("Jan 1, 1970, 12:33:41 AM"), void as null.
func headerValue(v any) json.RawMessage {
	return appendHeaderValue(nil, v)
}

func appendHeaderValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return append(dst, payload.RabbitMQBytes([]byte(x))...)
	case []byte:
		return append(dst, payload.RabbitMQBytes(x)...)
	case bool:
		return strconv.AppendBool(dst, x)
	case int8:
		return strconv.AppendInt(dst, int64(x), 10)
	case int16:
		return strconv.AppendInt(dst, int64(x), 10)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	case float32:
		return appendFloat(dst, float64(x), 32)
	case float64:
		return appendFloat(dst, x, 64)
	case amqp.Decimal:
		// A Java BigDecimal: unscaled value times 10^-scale.
		r := new(big.Rat).SetFrac(big.NewInt(int64(x.Value)), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Scale)), nil))
		return append(dst, r.FloatString(int(x.Scale))...)
	case time.Time:
		dst = append(dst, '"')
		dst = x.UTC().AppendFormat(dst, "Jan 2, 2006, 3:04:05 PM")
		return append(dst, '"')
	case amqp.Table:
		dst = append(dst, '{')
		for i, h := range headers(x) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = payload.AppendString(dst, h.Name)
			dst = append(dst, ':')
			dst = append(dst, h.Value...)
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendHeaderValue(dst, e)
		}
		return append(dst, ']')
	}
	// Unknown types (none in amqp091 v1.16) are written as null rather
	// than as invalid JSON.
	return append(dst, "null"...)
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// Gson writes these only in lenient mode; JSON has no literal.
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}
