// Package activemq is the poller of Amazon MQ for ActiveMQ mappings
// (eventSource "aws:mq").
//
// # Client: STOMP
//
// Lambda consumes ActiveMQ over OpenWire (JMS). OpenWire has no Go client,
// and Debian's ActiveMQ 5.17 (the broker the tests run) is built without
// AMQP 1.0, so the poller speaks STOMP 1.2 (github.com/go-stomp/stomp/v3),
// which every Amazon MQ for ActiveMQ broker serves (stomp+ssl://…:61614).
//
// # Acknowledgement
//
// The subscription's ack mode is client, where ActiveMQ 5.17's ACK is
// cumulative (it acknowledges every message the subscription delivered
// before the one named and not yet acknowledged) and its NACK is of one
// message, which a later ACK skips (StompSubscription, checked against the
// broker by TestBrokerClientAckSemantics). The poller keeps, per
// connection, the messages delivered in delivery order and how each ended
// (ack.go): a failed message is NACKed at once, so the broker's redelivery
// policy applies as it does to Lambda's JMS consumer: the message comes
// back with redelivered:true, and after maximumRedeliveries (6 on Amazon
// MQ) goes to ActiveMQ.DLQ (spec MQ-4); so are the messages of a stopping
// mapping, to come back at once. A finished message (its batch succeeded,
// or the filter dropped it) is only recorded; when the longest prefix of
// settled messages grows, one ACK of its last finished message
// acknowledges them all: about one frame per batch instead of one per
// message, which is the broker's work. A message still in flight ends the
// prefix, whatever was finished after it (the 5 lanes' batches finish out
// of order, and filtered-out messages are acknowledged ahead of the
// batches around them), so no ACK covers it before it is settled. The
// cost: a message finished behind one in flight is acknowledged only when
// that one settles. When the connection is lost meanwhile, the broker
// delivers it again (at least once); until then it holds a place of the
// prefetch (activemq.prefetchSize, Lanes x BatchSize by default), which
// bounds the messages the broker hands out unacknowledged, so a slow batch
// holds back the lanes after it once the prefetch is used up.
//
// # The event
//
// Messages are written in AWS's aws:mq element shape (spec 1.6) from the
// STOMP MESSAGE frame's headers: messageID from message-id; messageType
// jms/bytes-message when the frame has a content-length header (ActiveMQ
// sends one for BytesMessages only), else jms/text-message; deliveryMode 2
// (PERSISTENT) with persistent:true, else 1; replyTo, type, correlationId
// (reply-to, type, correlation-id; null when absent); expiration (expires,
// "0" when none); priority; redelivered; destination.physicalName
// (destination without /queue/); data (the body, base64); timestamp; and
// properties: every other header, as a string, except the frame's own
// (subscription, ack, content-length, content-type).
//
// What STOMP cannot carry exactly:
//   - brokerInTime and brokerOutTime: ActiveMQ does not send them to a STOMP
//     consumer. They are written as the message's timestamp and the time
//     the poller received it.
//   - Property types: STOMP headers are strings, and so are the event's
//     properties; the string forms agree with Lambda's for the usual types.
//   - Properties include the broker's own headers that ActiveMQ sends over
//     STOMP (for example scheduledJobId and redeliveryDelay on a
//     redelivery).
//
// # Brokers and failover
//
// A mapping's broker comes from --mq-broker ARN=URL,URL,... (the broker's
// endpoints as DescribeBroker lists them), else Amazon MQ's DescribeBroker
// (engine ACTIVEMQ; an active/standby broker has two instances). The poller
// uses the stomp:// and stomp+ssl:// endpoints, connects to the first that
// answers and, when its connection is lost, reconnects with backoff trying
// them in turn, so it follows the standby when it takes over. Credentials
// come from the BASIC_AUTH secret; refused credentials disable the mapping
// with EVENT_SOURCE_AUTHN_ERROR (spec MQ-7).
//
// # Concurrency
//
// MQ-3 allows 5 concurrent invocations per ActiveMQ mapping. The poller
// spreads its records over 5 lanes (a batch's worth to each in turn); the
// pipeline has one batch in flight per lane. With several workers on one
// PostgreSQL store, the 5 are split among them (Descriptor.Concurrency,
// pipeline.Sharer).
package activemq
