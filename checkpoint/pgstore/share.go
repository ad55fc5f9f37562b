package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConcurrencyShare renews worker's presence on mapping for ttl (the
// presence Balance renews: esmd_lane_workers), forgets workers whose
// presence expired, and returns worker's share of limit concurrent
// invocations among the live workers: Share, the first limit mod W workers
// by id getting one more. Shares add up to limit, so a queue mapping's
// cap (ScalingConfig.MaximumConcurrency, Amazon MQ's) holds across the
// workers once each has read its share; with more workers than limit,
// some get 0. It implements pipeline.Sharer.
func (s *Store) ConcurrencyShare(ctx context.Context, mapping, worker string, limit int, ttl time.Duration) (int, error) {
	var live []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		live, err = renewPresence(ctx, tx, mapping, worker, ttl)
		return err
	})
	if err != nil {
		return 0, s.errorf("share the concurrency of "+mapping, err)
	}
	return Share(limit, live, worker), nil
}

// LeaveShare ends worker's presence on mapping: the others take its share
// at their next ConcurrencyShare. It implements pipeline.Sharer.
func (s *Store) LeaveShare(ctx context.Context, mapping, worker string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM esmd_lane_workers WHERE mapping = $1 AND worker = $2`, mapping, worker); err != nil {
		return s.errorf("leave "+mapping, err)
	}
	return nil
}

// renewPresence renews worker's presence on mapping for ttl and forgets
// expired ones, under the mapping's advisory lock, and returns the live
// workers sorted by id.
func renewPresence(ctx context.Context, tx pgx.Tx, mapping, worker string, ttl time.Duration) ([]string, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('esmd-lanes:' || $1, 0))`, mapping); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO esmd_lane_workers (mapping, worker, expires_at)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (mapping, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at`, mapping, worker, ttl.Seconds()); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM esmd_lane_workers WHERE mapping = $1 AND expires_at <= now()`, mapping); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT worker FROM esmd_lane_workers WHERE mapping = $1 ORDER BY worker`, mapping)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
