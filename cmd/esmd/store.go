package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

const storeUsage = "where mappings and checkpoints live: empty for the embedded store under --data-dir (one esmd process), " +
	"or a postgres:// URL that several esmd workers share (default $ESMD_STORE; give the password with PGPASSWORD or ~/.pgpass, not in the URL)"

// stateStore is what serve keeps its state in: the engine's mappings and
// the sources' checkpoints.
type stateStore interface {
	esm.Store
	source.Checkpoints
	Close() error
}

// The PostgreSQL store is shared by several workers' engines.
var _ esm.SharedStore = (*pgstore.Store)(nil)

// openedStore, when set (by tests), is told of each embedded store serve
// opens, so a test can read checkpoints while serve holds the file.
var openedStore func(*checkpoint.Store)

// openStore opens the store --store names: the embedded store under
// --data-dir by default, or PostgreSQL.
func openStore(ctx context.Context, c *common, log *slog.Logger) (stateStore, error) {
	switch {
	case c.store == "":
		s, err := checkpoint.Open(c.dataDir)
		if err != nil {
			return nil, err
		}
		for _, n := range s.Verification().Notes {
			log.Warn("store", "path", s.Path(), "note", n)
		}
		if openedStore != nil {
			openedStore(s)
		}
		return s, nil
	case pgstore.IsURL(c.store):
		s, err := pgstore.Open(ctx, c.store)
		if err != nil {
			return nil, err
		}
		log.Info("store", "postgres", s.String(), "schema-version", pgstore.SchemaVersion)
		return s, nil
	default:
		return nil, fmt.Errorf("--store %s: want a postgres:// URL, or nothing for the embedded store under --data-dir", pgstore.Redact(c.store))
	}
}
