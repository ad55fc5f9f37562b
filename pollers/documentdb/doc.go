// Package documentdb reads the change stream of an Amazon DocumentDB event
// source mapping (Lambda's aws:docdb, or any MongoDB replica set) with the
// MongoDB Go driver (go.mongodb.org/mongo-driver/v2) and implements
// source.Poller for it.
//
// What it reproduces (spec sections 1.8 and 7):
//
//   - the change stream of DocumentDBEventSourceConfig.DatabaseName's
//     CollectionName, or of the whole database when CollectionName is
//     omitted (DOC-3), with FullDocument Default or UpdateLookup;
//   - StartingPosition LATEST, TRIM_HORIZON (the oldest event the stream
//     still retains: the earliest startAtOperationTime the server accepts,
//     found by bisection) and AT_TIMESTAMP (startAtOperationTime at the
//     StartingPositionTimestamp's second) for a mapping without a
//     checkpoint (DOC-4);
//   - one lane, the stream ("<database>.<collection>" or "<database>"),
//     read in the server's order: the pipeline runs one invocation at a
//     time, in arrival order (DOC-2);
//   - each change event encoded as the element AWS puts in "events",
//     {"event":<change event in relaxed extended JSON>}, field for field
//     and in the server's order (AppendEvent); the record's ID and Seq are
//     the resume token's _data and its Arrival the event's clusterTime,
//     from which Lag reports IteratorAge (DOC-10);
//   - checkpoints: the resume token of the last event such that it and
//     every event before it are done (source.Tracker), in the mapping's
//     checkpoint store (coalesced per Config.CheckpointInterval); a
//     restart resumes after it with resumeAfter (DOC-9), so nothing is
//     lost or skipped and what is read again is what was in flight (and,
//     with a CheckpointInterval, what finished in the last interval). A
//     LATEST mapping checkpoints where it started before its first event,
//     so a restart does not skip what was written in between;
//   - errors: the driver resumes what it knows to be resumable (a lost
//     primary, a network error) by itself; the poller reopens the stream
//     from the last event it read after any other error, with backoff, and
//     after an invalidate event (a dropped collection or database: the
//     event is delivered, and the stream goes on with startAfter). A
//     position that fell out of the stream's history (code 286
//     ChangeStreamHistoryLost) and credentials the server refuses (code 18
//     AuthenticationFailed) are not retried: Open or Poll returns an
//     *esm.DisableError (ReasonHistoryLost, ReasonAuthN) and the pipeline
//     disables the mapping, as Lambda does (DOC-6);
//   - TLS on unless the connection string says tls=false, with a CA
//     bundle (Config.CAFile) for DocumentDB's private CA; SCRAM
//     credentials from the BASIC_AUTH secret (DOC-1).
//
// What the pipeline does with the records, from the descriptor: batches
// of BatchSize (default 100) with a 500 ms window from the first record
// (DOC-5), the function's errors retried until it succeeds (DOC-6), events
// over 6 MB dropped and counted (DOC-7), FilterCriteria refused (the
// engine refuses them for DocumentDB).
//
// It is tested against internal/mongotest, an in-repo MongoDB wire-protocol
// server, not against DocumentDB or mongod (none can run on the build
// machines): see that package for what the tests do and do not say.
package documentdb
