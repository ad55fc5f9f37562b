package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLock is the key of the transaction-level advisory lock Open
// holds while it migrates ("esmd" in ASCII): workers starting at once
// migrate one after the other.
const migrationLock = 0x65736d64

// migrations are the schema's versions, in order: migrations[i] brings a
// database at version i to version i+1. A released migration is never
// edited; a change of schema is a new one at the end.
var migrations = []string{
	// 1: mappings (opaque JSON bytes with a revision), and positions per
	// mapping and lane, deleted with their mapping.
	`CREATE TABLE esmd_mappings (
		uuid     text PRIMARY KEY,
		data     bytea NOT NULL,
		revision bigint NOT NULL
	);
	CREATE TABLE esmd_positions (
		mapping  text NOT NULL REFERENCES esmd_mappings (uuid) ON DELETE CASCADE,
		lane     text NOT NULL,
		position text NOT NULL,
		PRIMARY KEY (mapping, lane)
	);`,
	// 2: leases of the lanes no broker shares out (stream shards), and the
	// workers that share a mapping's lanes, each with its expiry.
	`CREATE TABLE esmd_leases (
		mapping    text NOT NULL REFERENCES esmd_mappings (uuid) ON DELETE CASCADE,
		lane       text NOT NULL,
		owner      text NOT NULL DEFAULT '',
		counter    bigint NOT NULL DEFAULT 0,
		expires_at timestamptz NOT NULL DEFAULT '-infinity',
		PRIMARY KEY (mapping, lane)
	);
	CREATE TABLE esmd_lane_workers (
		mapping    text NOT NULL REFERENCES esmd_mappings (uuid) ON DELETE CASCADE,
		worker     text NOT NULL,
		expires_at timestamptz NOT NULL,
		PRIMARY KEY (mapping, worker)
	);`,
}

// SchemaVersion is the schema version this esmd writes.
var SchemaVersion = len(migrations)

// migrate brings the schema to SchemaVersion in one transaction, under the
// advisory lock. A database migrated by a newer esmd (a version this one
// does not know) is an error: this esmd would not know its meaning.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS esmd_schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create esmd_schema_migrations: %w", err)
		}
		var cur int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM esmd_schema_migrations").Scan(&cur); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if cur > len(migrations) {
			return fmt.Errorf("the schema is at version %d, newer than this esmd's %d: run a newer esmd", cur, len(migrations))
		}
		for v := cur + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migrate the schema to version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO esmd_schema_migrations (version) VALUES ($1)", v); err != nil {
				return fmt.Errorf("record schema version %d: %w", v, err)
			}
		}
		return nil
	})
}
