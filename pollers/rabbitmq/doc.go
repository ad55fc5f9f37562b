// Package rabbitmq reads the queue of an Amazon MQ for RabbitMQ event source
// mapping (or any AMQP 0-9-1 broker) with github.com/rabbitmq/amqp091-go and
// implements source.Poller for it.
//
// What it reproduces (spec sections 1.7 and 6):
//
//   - one queue per mapping (Queues), in the virtual host of the VIRTUAL_HOST
//     source access configuration (default "/"), logging in with the
//     BASIC_AUTH secret's username and password (SASL PLAIN), over amqp://
//     or amqps://;
//   - manual acknowledgement: a delivery is acked only when the pipeline
//     reports it done (delivered, or filtered out), with a prefetch of
//     BatchSize per consumer (Config.Prefetch) so a consumer never holds
//     more than a batch;
//   - more consumers (channels) while the queue's backlog is larger than
//     what the current consumers can hold, as AWS scales MQ pollers (Open
//     starts as many as the backlog fills), and fewer when it drains;
//   - each message encoded byte-exact as the event's element
//     (payload.AppendRabbitMQ), grouped under "queue::vhost"; a message
//     too large for any event (6 MB) is acked and dropped by the pipeline,
//     as AWS does (the descriptor's OversizeDrop);
//   - Poll hands over every delivery that arrived since the last one;
//     batching them is the batcher's (the descriptor asks for a 1 ms linger,
//     so deliveries arriving one at a time still make full batches);
//   - failed records are nacked with requeue (after a delay that grows
//     with consecutive failures), so the broker redelivers them with
//     redelivered=true until they succeed or the queue's own policy
//     (message TTL, a quorum queue's delivery-limit) dead-letters them;
//   - a delivery whose channel closed before it was acked is requeued by
//     the broker; its ack is dropped and a record of it not yet handed to
//     the pipeline is discarded, so it is invoked again only once
//     redelivered;
//   - lost channels and connections (a broker restart) are recovered with
//     backoff; deliveries that were not acked before are redelivered by
//     the broker, never lost. A broker that stays unreachable past
//     Config.MaxDowntime turns into a Poll error, which the pipeline reports
//     as the mapping's LastProcessingResult before it opens the poller again;
//   - credentials the broker refuses (403 ACCESS_REFUSED at login) and
//     access it refuses to the virtual host or queue are not retried: Open
//     (or Poll, when it happens on a reconnect) returns an *esm.DisableError
//     with Reason EVENT_SOURCE_AUTHN_ERROR or EVENT_SOURCE_AUTHZ_ERROR, and
//     the pipeline disables the mapping with it, as Lambda does (spec MQ-7).
//
// Check (and Env.CheckSource, for create time) answer whether the virtual host
// and queue exist and the credentials work, with errors that wrap the
// sentinels ErrAuthentication, ErrAuthorization, ErrVHostNotFound and
// ErrQueueNotFound.
package rabbitmq
