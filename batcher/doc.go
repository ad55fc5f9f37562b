// Package batcher groups the records of one event source mapping into
// invocation batches the way AWS Lambda does (spec sections 2, 3.2 and 3.7):
// per lane, flushed on BatchSize, on the batching window or before the
// encoded event would pass the 6 MB Invoke limit, with at most one batch in
// flight per lane (per ParallelizationFactor sub-lane), and with tumbling
// windows for Kinesis and DynamoDB Streams. It knows nothing about where
// records come from or how they are invoked and acknowledged.
//
// # Driving it
//
// One Batcher per mapping. Pollers Add (or AddAll, one poll result at a
// time) the records the filter kept; a dispatcher loop takes batches with
// Next and reports each one with Done when it is finished, successful or
// not, retries and OnFailure routing included:
//
//	b, err := batcher.New(policy, env)
//	...
//	for {
//		bt, err := b.Next(ctx) // blocks until a batch is due
//		if err != nil {
//			return err // ctx done, or ErrClosed
//		}
//		go func() { // or hand to a worker pool
//			state := dispatch(bt) // Oversize: route to failure, no Invoke
//			b.Done(bt, state)     // releases the (sub-)lane
//		}()
//	}
//
// The lane stays blocked between Next and Done, so Done must come even when
// the batch is discarded. Pollers call Buffered before fetching more for a
// lane (backpressure) and EndLane when a shard closes. The Batcher starts no
// goroutines; Next waits in its caller's goroutine and several goroutines
// may call Next at once.
//
// # When the batching window starts
//
// Policy.WindowStart chooses between AWS's two documented behaviours:
//
//   - AfterInvoke (Kinesis, DynamoDB Streams, SQS): "the next batching
//     window begins as soon as the previous function invocation completes".
//     A lane's window opens at the Done of its previous batch; a lane that
//     was idle (nothing buffered, nothing in flight) opens it at its first
//     record. So records that arrive while a batch is in flight wait until
//     Done+Window, and a record that arrives on an idle lane waits Window.
//     (AWS's pollers loop "gather for Window, invoke"; on an idle lane the
//     phase of that loop is arbitrary, so the Batcher anchors it at the first
//     record, which gives the documented upper bound.)
//   - FirstRecord (Amazon MQ, DocumentDB, Kafka): "the batching window
//     begins as soon as the first record arrives". The window opens when the
//     first record of the next batch is added; if it expired while the
//     lane's previous batch was in flight, the batch is released at Done.
//
// With Window zero both release whatever is buffered as soon as the lane is
// free; AddAll makes a whole poll result visible at once, so it still
// becomes one batch.
//
// For Kafka the two specs disagree: the API spec (section 8) says the window
// starts at the first record, the runtime spec (BAT-6) that it starts when
// the previous invocation (on-demand mode) or batch (provisioned mode)
// completes. DefaultPolicy follows the API spec; a Kafka runner that wants
// BAT-6 sets AfterInvoke. Done is "the invocation completed" in both cases:
// the caller calls it after its retries, which for ordered sources is when
// the lane's last invocation ended. Not modelled: SQS's "may wait up to 20
// seconds" on a low-traffic queue with a window (BAT-7), which is a property
// of SQS long polling, not of batching.
//
// # The 6 MB cut
//
// Sizes are those of the encoded event (payload.Builder), envelope, Kafka
// and RabbitMQ group keys and tumbling-window wrapper included: a batch is
// released when the next record would take its event past
// payload.MaxPayloadSize (6,291,456 bytes); an event of exactly that size is
// allowed. A record whose event alone passes the limit is released on its own
// with Oversize set, after the records before it, so the lane never blocks
// and the caller can apply spec 2.3 (on-failure destination with
// MaximumPayloadSizeExceeded for Kafka and, by inference, Kinesis; drop for
// MQ and DocumentDB).
//
// # Groups: Kafka and RabbitMQ
//
// A batch holds the records of one lane, but they may carry several
// Record.Group values: the event then has one "topic-partition" (or
// "queue::vhost") key per group, in order of first appearance, and the size
// is measured on that event. A Kafka poller that sets Lane to the
// topic-partition gets one partition per event and one batch in flight per
// partition; one that sets Lane to its consumer (and Group to the
// topic-partition) gets AWS's payloads that mix partitions (spec KAF-4),
// with the consumer's batches one at a time, each partition still in order.
//
// # Sub-lanes
//
// With ParallelizationFactor N > 1 a lane is split into N sub-lanes by
// SubLane(Key, N) (spec STR-8, INF), each with its own batching window, batch
// in flight and tumbling-window state. Records with one Key share a
// sub-lane, so per-key order holds; records with different keys may be
// invoked out of lane order, and the caller's checkpoint must only pass a
// position when every sub-lane is done with it.
//
// # Tumbling windows
//
// With TumblingWindow set (Kinesis and DynamoDB Streams), each record belongs
// to the window [start, start+TumblingWindow) that contains its
// Record.Arrival (approximateArrivalTimestamp / ApproximateCreationDateTime),
// windows aligned on the Unix epoch. A batch never mixes windows. Each batch
// carries the window wrapper (Batch.Window, payload.Window): bounds, the
// shardId (the lane), the state the function returned for the previous
// invocation of this window and sub-lane (nil, sent as {}, at the start of a
// window), and two flags:
//
//   - isFinalInvokeForWindow is set on the last invocation of a window. The
//     window is over when a record of a later window is buffered on the lane,
//     when WithWindowGrace (default 2 minutes, AWS's "waits up to 2 minutes")
//     has passed since the window's end, or when the lane ended. If the last
//     records of the window were sent before that was known, a final
//     invocation without records follows. Its state is then dropped.
//   - isWindowTerminatedEarly is set when the window is closed before its
//     time: when the function returns a state over 1 MB (spec STR-34) the
//     next invocation carries that state, no records and both flags, and the
//     window goes on with a fresh state (aws-lambda-go and the Rust events
//     crate document "subsequent invoke will continue the same window with a
//     fresh state"); and when the lane ends (EndLane) before the window's
//     end.
//
// Batches of a window are otherwise cut by the ordinary rules (BatchSize,
// batching window, 6 MB), and such batches are not "terminated early".
package batcher
