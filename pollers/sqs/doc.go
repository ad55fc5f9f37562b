// Package sqs is the Amazon SQS poller of esmd: it reads a standard or FIFO
// queue the way a Lambda event source mapping does and hands the messages to
// the pipeline as byte-exact SQS event records (spec 1.4 and 4).
//
// # Receiving
//
// Several receivers long-poll the queue (WaitTimeSeconds 20,
// MaxNumberOfMessages 10, every system and message attribute). They start at
// five, grow by one (at most five a second, AWS's 300 a minute) while
// receives come back full and the pipeline is waiting for records, and
// shrink, down to two, when long polls come back empty. With
// ScalingConfig.MaximumConcurrency they never pass it (and do not shrink
// below min(5, MaximumConcurrency): AWS turns its down-optimisation off
// when the maximum is set). A receiver that has records and nobody to take
// them waits: the pipeline's buffer is the backpressure. The read-ahead is
// also bounded by the poller itself: a receiver does not receive while the
// poller holds four batches (of max(BatchSize, 10)) per receiver: the one
// filling, the one invoking and two to ride out invocations that fall
// behind. Every message received ahead of its invocation
// counts a receive against the queue's maxReceiveCount if it has to be
// released, and fauxqs slows down with many messages in flight.
//
// The poller's SQS client keeps enough idle connections for its receivers
// and the deletes that run beside them (the SDK keeps 10 per host; past
// that every call would dial a new connection, which costs the SQS server
// more than the call). BenchmarkThroughput measures esmd against a plain
// ReceiveMessage -> DeleteMessageBatch loop with as many receivers on the
// same server, and counts the SQS calls and connections of each.
//
// Closing the poller stops the receive loops at once, but a long poll
// already in progress is left to finish (20 s at most) and what it brings
// is released at once: cancelling it would let SQS hand messages to a
// request nobody reads (fauxqs does not notice the client went away), and
// they would stay invisible for their whole visibility timeout.
//
// # Lanes
//
// A queue has no lanes of its own: the descriptor asks the batcher to deal
// records to lanes (Batching.Deal; at most one batch in flight each) in
// runs of BatchSize, so a batch fills (BatchSize, window or 6 MB) the way one
// AWS poller fills it, and consecutive batches go to different lanes and run
// concurrently. Poll hands out one receive at a time: without a batching
// window each receive starts a new run, since AWS then invokes with what one
// receive returned. A standard queue has no order; its lanes only bound how
// many batches run at once. The poller sets a FIFO record's Key to its
// message group.
//
// On a FIFO queue a batch may mix several message groups, as on AWS (spec
// SQS-20): a receive's messages are dealt like a standard queue's, except
// that a group the batcher still holds records of (buffered or in an
// invocation) stays on the lane it has. So a group never has
// two batches in flight and its messages reach the function in order, and
// concurrency is bounded by the number of active groups (SQS-6), since SQS
// hands out no message of a group while one of its messages is in flight.
// A failing message holds back its own group and no other:
//
//   - without ReportBatchItemFailures a function error hands the whole
//     batch back, every group in it, as on AWS;
//   - with it, the named messages go back and so does every later message
//     of their groups that esmd holds, even when the function did not name
//     them (AWS asks the function to, SQS-19); the other groups of the batch
//     are deleted;
//   - a message reported done while an earlier message of its group is
//     still held (a filtered-out message behind a buffered one, the
//     successes of a partial response before its failures) is deleted only
//     after that one is, and goes back with it if it fails.
//
// fauxqs returns at most one message per group per receive, so with it a
// batch never holds two messages of one group; SQS returns up to ten. The
// rules above do not depend on either. A FIFO receive carries a
// ReceiveRequestAttemptId, kept across retries of a failed call, so that an
// answer lost to the network is answered again rather than left locking its
// groups. Not done: when BatchSize is smaller than what one receive
// returned of a group (SQS only), the group's later batches are still
// invoked after an earlier one failed; their messages then go back too
// (never deleted ahead of the failed one), so they are processed again, in
// order, after it.
//
// # Visibility
//
// The rule: esmd never holds a message past its visibility deadline. Every
// received message is tracked, from the receive until Done or Failed, with
// the deadline SQS gave it (receive time + the queue's VisibilityTimeout).
// When half the timeout is left and the message is still held (buffered in
// a batching window, waiting for its lane, or in an invocation), its
// visibility is extended by one more VisibilityTimeout
// (ChangeMessageVisibilityBatch), up to SQS's 12-hour limit. So a long
// batching window or a slow function does not make SQS hand the same
// message to a second receiver while the first copy is still being
// processed. AWS documents the opposite trade (it does not extend and asks
// for VisibilityTimeout >= 6 x the function timeout + the window); extending
// is what keeps a message from being processed twice at once.
//
// On Failed a message goes back to the deadline it would have had without
// the extensions (receive time + VisibilityTimeout, now if that has passed),
// so a failed message reappears when AWS would make it reappear and the
// queue's redrive policy counts its receives as on AWS. A message that
// was never extended is left alone (no call).
//
// When the pipeline stops (the mapping is disabled or deleted, esmd shuts
// down), messages it did not finish are released at once (visibility 0):
// those still buffered on Close, and those Failed with a cancelled context
// (the invocation was cut short by the stop, not failed by the function).
//
// # Outcomes
//
// Done deletes with DeleteMessageBatch (10 per call, calls in parallel) and
// retries the entries SQS failed for a reason of its own (not the sender's)
// with backoff. Deletes of a finished batch run to completion even when the
// pipeline is being stopped, bounded by a timeout. Nothing is deleted that
// was not reported Done.
//
// # Errors
//
// Throttling, network errors and an SQS endpoint that went away (restarted)
// are retried with exponential backoff (100 ms to 10 s, jittered) by each
// receiver; the mapping keeps running. A queue that does not exist refuses
// the mapping at create time (Runner.CheckSource) with the message AWS
// gives.
package sqs
