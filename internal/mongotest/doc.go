// Package mongotest is an in-process MongoDB wire-protocol server for tests:
// enough of a one-node replica set that the official Go driver
// (go.mongodb.org/mongo-driver/v2) connects, authenticates, writes
// documents and reads change streams from it. It exists because no real
// mongod, no FerretDB with change streams and no mongodb-memory-server can
// run on the build machines (none is packaged for Debian 12, and the
// in-memory servers download binaries from the internet), and esmd's
// DocumentDB source (Lambda's aws:docdb) reads change streams.
//
// # What it implements
//
//   - Framing: OP_MSG (body and document-sequence sections, the optional
//     CRC-32C checksum, moreToCome requests with no reply) and OP_QUERY for
//     the driver's legacy first hello, answered with OP_REPLY. Messages over
//     48,000,000 bytes, BSON nested deeper than 200, malformed BSON and
//     unknown opcodes (OP_COMPRESSED included: no compressor is ever
//     negotiated) close the connection; documents and change events over
//     16 MiB are refused with mongod's errors. Every connection has an idle read deadline, a
//     deadline for the rest of a message once its header arrived, and a
//     write deadline.
//   - Handshake: hello/isMaster as the primary of replica set "rs0"
//     (setName, hosts, me, electionId, setVersion, maxWireVersion 21 as
//     MongoDB 7.0, logicalSessionTimeoutMinutes so the driver uses sessions
//     and retryable writes), with operationTime and $clusterTime on every
//     reply. No topologyVersion is sent, so the driver polls hello instead of
//     streaming it. Also ping, buildInfo, endSessions, listDatabases,
//     listCollections, create, drop, dropDatabase.
//   - Authentication (Options.Username or SetCredentials): SCRAM-SHA-256 and
//     SCRAM-SHA-1 through saslStart/saslContinue, speculative authentication
//     in hello, users in the "admin" database only. A wrong user or password
//     fails as mongod does: code 18 AuthenticationFailed, "Authentication
//     failed.". Commands other than the handshake, ping, buildInfo,
//     endSessions and logout need an authenticated connection (code 13
//     Unauthorized).
//   - Data, in memory per database.collection in insertion order: insert (an
//     ObjectID _id is added when absent; duplicate _id gives write error
//     11000), update with $set, $unset, $inc and $setOnInsert (dotted paths
//     into embedded documents), replacement updates, upserts and multi
//     updates, delete (limit 0 or 1), find (filter, sort, skip, limit,
//     batchSize, top-level projection) with getMore, count, and aggregate on
//     a collection with $match, $sort, $skip, $limit, $project, $count and
//     the $group {_id: <constant>, n: {$sum: 1}} that the driver's
//     CountDocuments sends. Filters support field equality (dotted paths,
//     array elements), $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists,
//     $and, $or and $nor with MongoDB's cross-type ordering.
//   - Change streams: aggregate whose first stage is $changeStream, on a
//     collection, on a database (aggregate: 1) or on the cluster
//     (allChangesForCluster on admin), with fullDocument "default" or
//     "updateLookup" (looked up when the event is returned, null when the
//     document is gone), resumeAfter, startAfter (which, unlike resumeAfter,
//     accepts an invalidate token) and startAtOperationTime, followed by
//     optional $match stages. Events have MongoDB's shape and field order:
//     _id {_data: <hex token>}, operationType (insert, update, replace,
//     delete, drop, dropDatabase, invalidate), clusterTime (a BSON
//     Timestamp, unique per write), wallTime, ns {db, coll}, documentKey,
//     fullDocument, updateDescription {updatedFields, removedFields,
//     truncatedArrays}. A no-op update writes no event. getMore long-polls up
//     to maxTimeMS (1 s when absent, as mongod) and every batch carries
//     postBatchResumeToken; killCursors. Resume tokens are fixed-length hex
//     strings that sort in event order, and resuming after a token returns
//     exactly the events after it.
//   - Retention: Options.MaxEvents and Options.Retention bound the event log.
//     Opening or continuing a stream at a point whose later events were
//     trimmed fails with code 286 ChangeStreamHistoryLost (no
//     ResumableChangeStreamError label, so the driver does not auto-resume).
//     OldestRetained tells where TRIM_HORIZON may start; TrimHistory drops the
//     whole log.
//   - Test hooks on *Server: SetFailPoint/FailNextGetMore/
//     InjectResumableError (also the configureFailPoint "failCommand"
//     command), TrimHistory, SetCredentials, DropConnections, Stats and
//     CommandCount, Close. Options.TLS serves TLS with a fresh self-signed
//     certificate (ClientTLSConfig, CACert).
//
// # What it does NOT implement
//
// It is not DocumentDB and not mongod. Tests that pass here say nothing
// about these, which were never tried against a real server:
//
//   - DocumentDB specifics: change streams are always on (there is no
//     per-collection enablement with modifyChangeStreams, and no error when
//     a stream is opened on a collection where they are off); no 3-hour (or
//     any) default retention, no change_stream_log_retention_duration; no
//     DocumentDB event format differences; no elastic clusters.
//   - Indexes other than the implicit unique _id, transactions,
//     findAndModify, bulkWrite, collations, arrayFilters, pipeline updates,
//     array-index paths ("a.0") in updates, $push and the other array
//     operators, regular-expression and $expr filters, $lookup and every
//     aggregation stage not listed above; unsupported input gives an error
//     naming mongotest, never a silently wrong answer.
//   - Resume tokens are mongotest's own (a fixed-length hex form of the
//     cluster time, not mongod's KeyString with the document key), and are
//     not checked against the stream's namespace or against the log (mongod
//     answers 280 ChangeStreamFatalError when a token's event is missing).
//     A resume point is refused (286) only when an event after it was
//     trimmed; mongod also refuses when the token's own event was trimmed.
//   - Pre- and post-images (fullDocument whenAvailable/required,
//     fullDocumentBeforeChange), showExpandedEvents, rename events,
//     sharding, read concern and write concern (all accepted and ignored),
//     compression, exhaust cursors, streaming hello, x.509, LDAP, AWS IAM
//     and OIDC authentication, users in databases other than admin,
//     authorization (an authenticated user may do anything).
//   - Durability: everything is in memory and gone at Close.
package mongotest
