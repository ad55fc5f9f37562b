// Package pgstore keeps esmd's durable state in PostgreSQL, for several
// esmd workers that share one set of mappings and checkpoints
// (esmd serve --store postgres://...). It is the shared counterpart of
// package checkpoint's embedded bbolt store, with the same methods and
// meaning, plus what sharing needs:
//
//   - mapping revisions: every mapping row has a revision, and
//     SaveMappingIf / DeleteMappingIf write only over the revision the
//     caller read, so that no worker overwrites a change it has not seen;
//   - change notifications: every mapping write sends a NOTIFY on the
//     esmd_mappings channel in its transaction, and Watch calls back with
//     the changed mapping's UUID, so a change made through one worker's API
//     reaches every worker within milliseconds.
//
// The schema is created or migrated by Open, in one transaction under an
// advisory lock: workers that start together wait for each other, and each
// migration runs once (see migrations).
//
// Passwords are never logged: Redact removes them from a connection string,
// and errors name the database with Redact. Prefer PGPASSWORD or a
// ~/.pgpass file to a password in the URL, which ps shows.
package pgstore
