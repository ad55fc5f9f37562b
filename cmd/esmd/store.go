package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

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
		if c.leaseTTL < time.Second {
			return nil, fmt.Errorf("--lease-duration %v: want at least 1s", c.leaseTTL)
		}
		if c.workerID != "" && !reWorkerID.MatchString(c.workerID) {
			return nil, fmt.Errorf("--worker-id %q: want 1 to 64 letters, digits, '.', '_' or '-'", c.workerID)
		}
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

// reWorkerID is what --worker-id accepts: what a Kafka group.instance.id
// allows (internal/workerid makes ids of the same shape).
var reWorkerID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// defaultWorkerID is the host name and the process id: the worker's id
// when it has none in its data directory.
func defaultWorkerID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "esmd"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// lanesPath is esmd's own endpoint (not part of the AWS API) that shows
// which worker holds which lane of a mapping: GET /esmd/mappings/UUID/lanes.
const lanesPath = "/esmd/mappings/"

// laneOwners is what the lanes endpoint needs of the store.
type laneOwners interface {
	LaneOwners(ctx context.Context, mapping string) ([]pgstore.Lease, error)
}

// withLanes serves the lanes endpoint beside the API (and behind its
// guards): the leases of the mapping's lanes, from the shared store, as
// {"Lanes": [{"Lane", "Owner", "Counter", "Expires", "Live"}]}. With the
// embedded store one process reads every lane, and there are no leases.
func withLanes(next http.Handler, store any, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, lanesPath)
		id, ok2 := strings.CutSuffix(rest, "/lanes")
		if !ok || !ok2 || id == "" || strings.Contains(id, "/") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s, ok := store.(laneOwners)
		if !ok {
			http.Error(w, "this esmd keeps its state in its embedded store: it reads every lane itself, without leases", http.StatusNotImplemented)
			return
		}
		leases, err := s.LaneOwners(r.Context(), id)
		if err != nil {
			log.Error("read lane leases", "uuid", id, "err", err)
			http.Error(w, "could not read the leases", http.StatusInternalServerError)
			return
		}
		if leases == nil {
			leases = []pgstore.Lease{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct{ Lanes []pgstore.Lease }{leases})
	})
}
