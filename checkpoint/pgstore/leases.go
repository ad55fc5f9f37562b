package pgstore

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Leases of lanes, in the style of the Kinesis Client Library: a lane
// (a stream shard) has one owner at a time, an expiry the owner renews, and
// a counter that grows each time the lane changes hands. Every checkpoint
// write of a leased lane is conditional on the counter its writer holds
// (SetPositionsFenced), in the same statement, so a worker that lost a
// lane, however long it was paused, never writes over its successor.
//
// Time is the database's (now()), so workers need no synchronised clocks.
//
// Balance is the whole protocol of one worker for one mapping, run every
// third of the lease time: in one transaction, serialised per mapping by
// an advisory lock, it
//
//  1. renews the worker's presence (esmd_lane_workers) and forgets
//     workers whose presence expired: W live workers;
//  2. renews the worker's leases, and releases those of lanes no longer
//     to be shared (a shard read to its end);
//  3. computes the worker's share of the L lanes: with the live workers
//     sorted by id, the first L mod W get ceil(L/W), the others
//     floor(L/W). Shares differ by at most one and add up to L, so once
//     every worker holds its share nobody takes anything;
//  4. takes free lanes (never owned, released, or expired: a dead
//     worker's) up to its share;
//  5. answers the lanes it holds beyond its share: the caller stops
//     reading them, stores their positions and Releases them, and
//     workers below their share take them at their next Balance. Nothing
//     is stolen: a lane changes hands only when released or expired.

// Balance runs one round of the lease protocol (see above) for worker on
// mapping, whose lanes to share are ready, with leases of ttl. It returns
// the lanes the worker owns, with their counters (the fencing token of
// SetPositionsFenced), and those of them it should hand over.
func (s *Store) Balance(ctx context.Context, mapping, worker string, ready []string, ttl time.Duration) (owned map[string]int64, handoff []string, err error) {
	secs := ttl.Seconds()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		owned = map[string]int64{}
		live, err := renewPresence(ctx, tx, mapping, worker, ttl)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO esmd_leases (mapping, lane) SELECT $1, unnest($2::text[])
			ON CONFLICT (mapping, lane) DO NOTHING`, mapping, ready); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE esmd_leases SET owner = '', expires_at = '-infinity'
			WHERE mapping = $1 AND owner = $2 AND NOT (lane = ANY($3))`, mapping, worker, ready); err != nil {
			return err
		}
		if err := collectOwned(ctx, tx, owned, `UPDATE esmd_leases SET expires_at = now() + make_interval(secs => $3)
			WHERE mapping = $1 AND owner = $2 RETURNING lane, counter`, mapping, worker, secs); err != nil {
			return err
		}
		share := Share(len(ready), live, worker)
		if n := share - len(owned); n > 0 {
			if err := collectOwned(ctx, tx, owned, `UPDATE esmd_leases SET owner = $2, counter = counter + 1,
				expires_at = now() + make_interval(secs => $3)
				WHERE mapping = $1 AND lane IN (
					SELECT lane FROM esmd_leases
					WHERE mapping = $1 AND lane = ANY($4) AND (owner = '' OR expires_at <= now())
					ORDER BY lane LIMIT $5 FOR UPDATE)
				RETURNING lane, counter`, mapping, worker, secs, ready, n); err != nil {
				return err
			}
		}
		if len(owned) > share {
			lanes := make([]string, 0, len(owned))
			for l := range owned {
				lanes = append(lanes, l)
			}
			slices.Sort(lanes)
			handoff = lanes[share:]
		}
		return nil
	})
	if err != nil {
		return nil, nil, s.errorf("balance the lanes of "+mapping, err)
	}
	return owned, handoff, nil
}

func collectOwned(ctx context.Context, tx pgx.Tx, into map[string]int64, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			lane    string
			counter int64
		)
		if err := rows.Scan(&lane, &counter); err != nil {
			return err
		}
		into[lane] = counter
	}
	return rows.Err()
}

// Share is worker's share of lanes among the live workers (sorted by id):
// the first lanes mod len(live) workers get one more than the others. A
// worker not among them (it was just forgotten) counts as the last.
func Share(lanes int, live []string, worker string) int {
	n := len(live)
	i := slices.Index(live, worker)
	if i < 0 {
		i, n = n, n+1
	}
	share := lanes / n
	if i < lanes%n {
		share++
	}
	return share
}

// Release gives up worker's leases of lanes: their next owner takes them
// at its next Balance. Call it after the lanes' readers stopped and their
// positions were stored.
func (s *Store) Release(ctx context.Context, mapping, worker string, lanes []string) error {
	if len(lanes) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE esmd_leases SET owner = '', expires_at = '-infinity'
		WHERE mapping = $1 AND owner = $2 AND lane = ANY($3)`, mapping, worker, lanes)
	if err != nil {
		return s.errorf("release lanes of "+mapping, err)
	}
	return nil
}

// SetPositionsFenced stores positions of lanes worker holds, each only if
// its lease is still worker's at the counter in counters (read from
// Balance): the check and the write are one statement, and the lease row
// is locked meanwhile, so a takeover either happens before (nothing is
// written) or waits for the write. It returns the lanes whose lease was
// lost, for which nothing was written.
func (s *Store) SetPositionsFenced(ctx context.Context, mapping, worker string, positions map[string]string, counters map[string]int64) (lost []string, err error) {
	if len(positions) == 0 {
		return nil, nil
	}
	lanes := make([]string, 0, len(positions))
	pos := make([]string, 0, len(positions))
	cnt := make([]int64, 0, len(positions))
	for l, p := range positions {
		lanes, pos, cnt = append(lanes, l), append(pos, p), append(cnt, counters[l])
	}
	rows, err := s.pool.Query(ctx, `WITH held AS (
			SELECT l.lane FROM esmd_leases l
			JOIN unnest($3::text[], $5::bigint[]) AS c(lane, counter) ON c.lane = l.lane AND c.counter = l.counter
			WHERE l.mapping = $1 AND l.owner = $2
			FOR SHARE OF l)
		INSERT INTO esmd_positions (mapping, lane, position)
		SELECT $1, t.l, t.p FROM unnest($3::text[], $4::text[]) AS t(l, p) JOIN held ON held.lane = t.l
		ON CONFLICT (mapping, lane) DO UPDATE SET position = EXCLUDED.position
		RETURNING lane`, mapping, worker, lanes, pos, cnt)
	if err != nil {
		return nil, s.errorf("write positions of "+mapping, err)
	}
	written, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.errorf("write positions of "+mapping, err)
	}
	for _, l := range lanes {
		if !slices.Contains(written, l) {
			lost = append(lost, l)
		}
	}
	slices.Sort(lost)
	return lost, nil
}

// Lease is one lane's lease, as LaneOwners reads it.
type Lease struct {
	Lane    string    `json:"Lane"`
	Owner   string    `json:"Owner"`
	Counter int64     `json:"Counter"`
	Expires time.Time `json:"Expires"`
	// Live is false once the lease expired (its owner stopped renewing).
	Live bool `json:"Live"`
}

// LaneOwners returns the leases of a mapping's lanes, by lane.
func (s *Store) LaneOwners(ctx context.Context, mapping string) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT lane, owner, counter, expires_at, expires_at > now() FROM esmd_leases
		WHERE mapping = $1 ORDER BY lane`, mapping)
	if err != nil {
		return nil, s.errorf("read the leases of "+mapping, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (l Lease, err error) {
		var exp pgtype.Timestamptz
		err = r.Scan(&l.Lane, &l.Owner, &l.Counter, &exp, &l.Live)
		l.Expires = exp.Time
		return l, err
	})
	if err != nil {
		return nil, s.errorf("read the leases of "+mapping, err)
	}
	return out, nil
}

// ResetPositions replaces positions of a mapping's lanes (esmd replay) and
// takes every lease of the mapping from its holder, in one transaction: a
// worker still reading a lane can no longer write its position (its
// counter is stale) and stops reading it at its next Balance, and whoever
// takes the lane next reads it from the new position.
func (s *Store) ResetPositions(ctx context.Context, mapping string, positions map[string]string) error {
	lanes, pos := make([]string, 0, len(positions)), make([]string, 0, len(positions))
	for l, p := range positions {
		lanes, pos = append(lanes, l), append(pos, p)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, upsertPositions, mapping, lanes, pos); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE esmd_leases SET counter = counter + 1, owner = '', expires_at = '-infinity'
			WHERE mapping = $1`, mapping)
		return err
	})
	if err != nil {
		return s.errorf("reset the positions of "+mapping, err)
	}
	return nil
}
