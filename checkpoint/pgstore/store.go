package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the NOTIFY channel of mapping changes; the payload is the
// changed mapping's UUID.
const Channel = "esmd_mappings"

// Store is the PostgreSQL store. It is safe for concurrent use, by any
// number of processes on one database.
type Store struct {
	pool *pgxpool.Pool
	name string // the database, for messages: Redact(dsn)
}

// IsURL reports whether s names a PostgreSQL database the way --store
// does: a postgres:// or postgresql:// URL.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database dsn names (a postgres:// URL or a
// key=value connection string, with the libpq environment variables such
// as PGPASSWORD) and creates or migrates the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	name := Redact(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the string with the password masked;
		// ours name it through Redact only.
		return nil, fmt.Errorf("pgstore: %s: not a PostgreSQL connection string", name)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "esmd"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", name, err)
	}
	s := &Store{pool: pool, name: name}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %s: %w", name, err)
	}
	return s, nil
}

// String names the database, without its password.
func (s *Store) String() string { return s.name }

// Close closes the store's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

var rePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact returns dsn with its password replaced by xxxxx, in both the URL
// form (any scheme) and the key=value form.
func Redact(dsn string) string {
	if scheme, _, ok := strings.Cut(dsn, "://"); ok {
		u, err := url.Parse(dsn)
		if err != nil {
			return scheme + "://(unparsable URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return rePassword.ReplaceAllString(dsn, "${1}xxxxx")
}

func (s *Store) errorf(what string, err error) error {
	return fmt.Errorf("pgstore: %s in %s: %w", what, s.name, err)
}

// SaveMapping stores a mapping definition under its UUID, whatever its
// stored revision, and notifies the other workers.
func (s *Store) SaveMapping(ctx context.Context, uuid string, data []byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO esmd_mappings (uuid, data, revision) VALUES ($1, $2, 1)
			ON CONFLICT (uuid) DO UPDATE SET data = EXCLUDED.data, revision = esmd_mappings.revision + 1`, uuid, data)
		if err != nil {
			return err
		}
		return notify(ctx, tx, uuid)
	})
	if err != nil {
		return s.errorf("save mapping "+uuid, err)
	}
	return nil
}

// SaveMappingIf stores a mapping definition if its stored revision is rev
// (0: the mapping is not stored yet) and returns its new revision; ok is
// false, and nothing is written, when the stored revision is another: a
// change the caller has not seen.
func (s *Store) SaveMappingIf(ctx context.Context, uuid string, data []byte, rev int64) (newRev int64, ok bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var q string
		if rev == 0 {
			q = `INSERT INTO esmd_mappings (uuid, data, revision) VALUES ($1, $2, 1)
				ON CONFLICT (uuid) DO NOTHING RETURNING revision`
		} else {
			q = `UPDATE esmd_mappings SET data = $2, revision = revision + 1
				WHERE uuid = $1 AND revision = $3 RETURNING revision`
		}
		args := []any{uuid, data}
		if rev != 0 {
			args = append(args, rev)
		}
		err := tx.QueryRow(ctx, q, args...).Scan(&newRev)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return notify(ctx, tx, uuid)
	})
	if err != nil {
		return 0, false, s.errorf("save mapping "+uuid, err)
	}
	return newRev, ok, nil
}

// DeleteMapping removes a mapping and every position it owns, and
// notifies the other workers.
func (s *Store) DeleteMapping(ctx context.Context, uuid string) error {
	_, err := s.DeleteMappingIf(ctx, uuid, 0)
	return err
}

// DeleteMappingIf removes a mapping and its positions if its stored
// revision is rev (0: whatever it is); ok is false when it is another. A
// mapping that is not stored is deleted already: ok.
func (s *Store) DeleteMappingIf(ctx context.Context, uuid string, rev int64) (ok bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var stored int64
		err := tx.QueryRow(ctx, `SELECT revision FROM esmd_mappings WHERE uuid = $1 FOR UPDATE`, uuid).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			ok = true
			return nil
		}
		if err != nil {
			return err
		}
		if rev != 0 && stored != rev {
			return nil
		}
		// Positions (and leases) go with their mapping: ON DELETE CASCADE.
		if _, err := tx.Exec(ctx, `DELETE FROM esmd_mappings WHERE uuid = $1`, uuid); err != nil {
			return err
		}
		ok = true
		return notify(ctx, tx, uuid)
	})
	if err != nil {
		return false, s.errorf("delete mapping "+uuid, err)
	}
	return ok, nil
}

func notify(ctx context.Context, tx pgx.Tx, uuid string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, uuid)
	return err
}

// LoadMappings returns every stored mapping definition keyed by UUID.
func (s *Store) LoadMappings(ctx context.Context) (map[string][]byte, error) {
	data, _, err := s.LoadMappingRevisions(ctx)
	return data, err
}

// LoadMappingRevisions returns every stored mapping definition and its
// revision, keyed by UUID.
func (s *Store) LoadMappingRevisions(ctx context.Context) (data map[string][]byte, revs map[string]int64, err error) {
	rows, err := s.pool.Query(ctx, `SELECT uuid, data, revision FROM esmd_mappings`)
	if err != nil {
		return nil, nil, s.errorf("read mappings", err)
	}
	defer rows.Close()
	data, revs = map[string][]byte{}, map[string]int64{}
	for rows.Next() {
		var (
			id  string
			b   []byte
			rev int64
		)
		if err := rows.Scan(&id, &b, &rev); err != nil {
			return nil, nil, s.errorf("read mappings", err)
		}
		data[id], revs[id] = b, rev
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.errorf("read mappings", err)
	}
	return data, revs, nil
}

// LoadMapping returns one mapping definition and its revision; rev is 0
// when the mapping is not stored.
func (s *Store) LoadMapping(ctx context.Context, uuid string) (data []byte, rev int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT data, revision FROM esmd_mappings WHERE uuid = $1`, uuid).Scan(&data, &rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.errorf("read mapping "+uuid, err)
	}
	return data, rev, nil
}

// Position returns the checkpoint of one lane of a mapping; ok is false
// when none was written.
func (s *Store) Position(ctx context.Context, mapping, lane string) (pos string, ok bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT position FROM esmd_positions WHERE mapping = $1 AND lane = $2`, mapping, lane).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, s.errorf("read position "+mapping+"/"+lane, err)
	}
	return pos, true, nil
}

// upsertPositions writes positions of a mapping that still exists: a
// pipeline still stopping after its mapping was deleted writes nothing.
// (Should the delete commit between the check and the insert, the foreign
// key makes the write fail instead of leaving a position behind.)
const upsertPositions = `INSERT INTO esmd_positions (mapping, lane, position)
	SELECT $1, l, p FROM unnest($2::text[], $3::text[]) AS t(l, p)
	WHERE EXISTS (SELECT 1 FROM esmd_mappings WHERE uuid = $1)
	ON CONFLICT (mapping, lane) DO UPDATE SET position = EXCLUDED.position`

// SetPosition durably records the checkpoint of one lane. Callers write a
// position only once every record at or before it is done.
func (s *Store) SetPosition(ctx context.Context, mapping, lane, pos string) error {
	if _, err := s.pool.Exec(ctx, upsertPositions, mapping, []string{lane}, []string{pos}); err != nil {
		return s.errorf("write position "+mapping+"/"+lane, err)
	}
	return nil
}

// SetPositions stores the checkpoints of several lanes of a mapping in one
// statement.
func (s *Store) SetPositions(ctx context.Context, mapping string, positions map[string]string) error {
	if len(positions) == 0 {
		return nil
	}
	lanes, pos := make([]string, 0, len(positions)), make([]string, 0, len(positions))
	for l, p := range positions {
		lanes, pos = append(lanes, l), append(pos, p)
	}
	if _, err := s.pool.Exec(ctx, upsertPositions, mapping, lanes, pos); err != nil {
		return s.errorf("write positions of "+mapping, err)
	}
	return nil
}

// Positions returns every lane's checkpoint of a mapping.
func (s *Store) Positions(ctx context.Context, mapping string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT lane, position FROM esmd_positions WHERE mapping = $1`, mapping)
	if err != nil {
		return nil, s.errorf("read positions of "+mapping, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (kv [2]string, err error) {
		err = r.Scan(&kv[0], &kv[1])
		return kv, err
	})
	if err != nil {
		return nil, s.errorf("read positions of "+mapping, err)
	}
	m := make(map[string]string, len(out))
	for _, kv := range out {
		m[kv[0]] = kv[1]
	}
	return m, nil
}

// exclusiveLock is the key of the session advisory lock Exclusive holds
// ("esmx").
const exclusiveLock = 0x65736d78

// Exclusive runs fn while holding a session advisory lock: no other
// worker's Exclusive runs meanwhile. The engine creates mappings under it,
// so that its duplicate check sees every other worker's creations.
func (s *Store) Exclusive(ctx context.Context, fn func() error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.errorf("take the exclusive lock", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(exclusiveLock)); err != nil {
		// The lock may have been granted as ctx ended: closing the
		// session releases it.
		conn.Conn().Close(context.WithoutCancel(ctx))
		return s.errorf("take the exclusive lock", err)
	}
	ferr := fn()
	if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(exclusiveLock)); err != nil {
		conn.Conn().Close(context.WithoutCancel(ctx))
	}
	return ferr
}
