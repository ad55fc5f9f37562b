package activemq

import (
	"strconv"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/esmd/esmd/payload"
)

// frameHeaders are the STOMP headers that are not JMS properties: the
// frame's own, and those carried in the event's named fields.
var frameHeaders = map[string]bool{
	"subscription": true, "ack": true, "content-length": true, "content-type": true,
	"message-id": true, "destination": true, "persistent": true, "reply-to": true,
	"type": true, "expires": true, "priority": true, "correlation-id": true,
	"redelivered": true, "timestamp": true,
}

// Message converts a STOMP MESSAGE frame's headers and body to the event's
// message (spec 1.6; the package doc says how each field is found).
// received stands for brokerOutTime.
func Message(h *frame.Header, body []byte, received time.Time) payload.ActiveMQMessage {
	m := payload.ActiveMQMessage{
		MessageID:     h.Get("message-id"),
		MessageType:   "jms/text-message",
		DeliveryMode:  1,
		ReplyTo:       h.Get("reply-to"),
		Type:          h.Get("type"),
		CorrelationID: h.Get("correlation-id"),
		Redelivered:   h.Get("redelivered") == "true",
		Destination:   strings.TrimPrefix(strings.TrimPrefix(h.Get("destination"), "/queue/"), "/topic/"),
		Data:          body,
		BrokerOutTime: received,
	}
	if _, ok := h.Contains("content-length"); ok {
		m.MessageType = "jms/bytes-message"
	}
	if h.Get("persistent") == "true" {
		m.DeliveryMode = 2
	}
	m.Expiration, _ = strconv.ParseInt(h.Get("expires"), 10, 64)
	m.Priority, _ = strconv.Atoi(h.Get("priority"))
	if ts, err := strconv.ParseInt(h.Get("timestamp"), 10, 64); err == nil {
		m.Timestamp = time.UnixMilli(ts)
	}
	m.BrokerInTime = m.Timestamp
	for i := range h.Len() {
		k, v := h.GetAt(i)
		if !frameHeaders[k] {
			m.Properties = append(m.Properties, payload.ActiveMQProperty{Name: k, Value: v})
		}
	}
	return m
}
