// Package stream is the shard machinery shared by the stream pollers
// (pollers/kinesis, pollers/dynamodbstreams): everything about reading a
// sharded, ordered stream that does not depend on which service it is.
//
// A source package implements Client, a thin adapter over its SDK client,
// and wraps the Poller that New returns:
//
//	type Client interface {
//		Shards(ctx) ([]Shard, error)                       // ListShards / DescribeStream, all pages
//		Iterator(ctx, shard, Position) (string, error)     // GetShardIterator
//		Read(ctx, shard, iterator, limit) (Page, error)    // GetRecords, records encoded
//		Classify(err) ErrorKind                            // which errors mean what
//	}
//
// The Poller then does the rest, identically for every source:
//
//   - Discovery: shards are listed once in New (so a missing stream is an
//     error there, and Classify(err) == NotFound tells it) and again every
//     Config.ListInterval, and at once whenever a shard is read to its end
//     (its children are about to be needed). A shard seen for the first
//     time gets its own reader goroutine, owned by the Poller.
//   - Lineage: a shard's reader waits until every parent it names (both
//     parents of a merge) that the listing still holds is finished: read to
//     its end, every one of its records done, and ShardEnd checkpointed.
//     A parent no longer listed (trimmed past retention) counts as finished.
//   - Where a shard starts: after its checkpoint if it has one (ShardEnd:
//     it is finished at once); otherwise at TRIM_HORIZON for a shard that
//     appeared after the poller started, or whose parent has a checkpoint
//     (the mapping read the parent, so the child was made since);
//     otherwise at Config.StartingPosition (TRIM_HORIZON, LATEST,
//     AT_TIMESTAMP with Config.Timestamp). A checkpoint always wins over
//     StartingPosition.
//   - Iterators: kept across reads; an iterator the source calls expired
//     (or any other read failure) is renewed after the last record read,
//     or from the checkpoint if none was read yet. A position past the
//     retention (Classify == Trimmed, DynamoDB's TrimmedDataAccessException)
//     is renewed at TRIM_HORIZON with a warning: those records are gone.
//   - Backoff: an empty read waits Config.EmptyWait, doubling up to
//     Config.MaxWait; so does a throttled call (Classify == Throttled:
//     ProvisionedThroughputExceededException, LimitExceededException),
//     which keeps its iterator. A read with records resets the wait.
//   - Closed shards: a Page with Next == "" means the shard was read to its
//     end. Once every record read from it is done, ShardEnd is written at
//     once (not coalesced) and its children may start.
//   - Checkpoints: records are registered in a source.Tracker in read
//     order; Done moves each shard's checkpoint to the last record such
//     that it and every record before it are done, never further. Writes
//     go to Config.Positions (checkpoint.Store) and never go backwards.
//   - MaxCalls: at most Config.MaxCalls GetShardIterator/GetRecords calls
//     are in flight over all shards (readers share connections). A Client
//     that also implements Pusher (records pushed, as with SubscribeToShard)
//     is not bounded, and its empty pages are read again at once.
//   - Coalesced checkpoints: with Config.CheckpointInterval > 0, Done only
//     notes positions; a writer stores the latest of each shard at most
//     once per interval, ShardEnd at once, and Close flushes. A crash
//     loses at most the last interval's positions: those records are read
//     again. With 0, Done returns only once its positions are stored (a
//     crash redelivers only the batches in flight), and the Dones of
//     several shards that come while a write is under way share the next
//     write (group commit: one fsync with a PositionBatcher store, instead
//     of one per shard in turn).
//   - MaxPending: a shard stops reading while it has Config.MaxPending
//     records read but not yet checkpointed, or more than its share of
//     Config.MaxPendingBytes (the shards being read share it equally)
//     once it has MinPending (two batches per sub-lane); a read asks for
//     what is left, in whole batches.
//   - Lag: Lag() returns each shard's IteratorAge (lane -> age) as AWS
//     defines it (spec STR-45): the age of the last record of the last
//     read, from its Arrival (the page's Behind only for records without
//     one), and 0 after an empty read (the reader is at the tip). Shards
//     not yet read and finished shards are absent.
//   - Leases (Config.Leases: several esmd workers on one PostgreSQL
//     store): shards are shared out, KCL-style. A lease loop runs a
//     Balance every third of Config.LeaseTTL over the ready shards (not
//     at ShardEnd, every listed parent at ShardEnd in the store): it
//     renews this worker's leases, takes free or expired ones up to its
//     share (shares differ by at most one), and names those beyond its
//     share, which the poller stops reading, checkpoints and releases.
//     Readers run only for held shards, and start only once their parents
//     are done (so parent/child order holds across workers). Every
//     checkpoint is written fenced by the lease counter: a shard another
//     worker took is written no more (LostError), and its reader stops.
//     Holds (source.LaneHolder) tells the pipeline not to invoke what it
//     read of a shard it no longer holds, nor anything after a renewal
//     older than the lease time (a paused worker). Close releases every
//     lease, so a worker that stops hands its shards over at once.
//   - Errors: Classify == NotFound on the listing, or on GetShardIterator
//     of a shard, ends the poller: the next Poll returns the error (the
//     pipeline restarts the poller with backoff, and a shard gone for good
//     is then no longer listed). Other errors are logged and retried.
//
// Records: Read returns each record encoded as the JSON element AWS puts
// in the event (package payload), with ID, Seq (the sequence number, the
// checkpoint position), Key (partition or item key: ParallelizationFactor
// sub-lanes) and Arrival set. The Poller sets Lane to the shard id and Meta
// to its own handle; records whose Meta is not the Poller's are ignored by
// Done.
//
// The Poller implements source.Poller (Poll, Ack, Close), source.LaneEnder
// (a shard read to its end), source.LaneHolder, Lag and Leased; a source wraps it, for example
//
//	type Poller struct{ *stream.Poller }
//
// Close stops every reader and waits for it; records not done are read
// again from the checkpoints by the next Poller (at least once).
package stream
