package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esmd/esmd/internal/backoff"
)

// Watch calls changed with the UUID of each mapping written or deleted
// (by any worker, this one included) until ctx is done, and then returns
// ctx's error. It listens on a connection of its own; when that connection
// is lost it reconnects with backoff, and after each (re)connection it
// calls changed("") first: notifications sent meanwhile were lost, so
// anything may have changed. changed is called from one goroutine, in
// order, and should not block for long.
func (s *Store) Watch(ctx context.Context, log *slog.Logger, changed func(uuid string)) error {
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		err := s.listen(ctx, changed, bo.Reset)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.Next()
		if log != nil {
			log.Warn("pgstore: lost the notification connection; reconnecting", "store", s.name, "err", err, "backoff", wait)
		}
		if backoff.Sleep(ctx, wait) != nil {
			return ctx.Err()
		}
	}
}

// listen is one connection of Watch: connected reports that it listens.
func (s *Store) listen(ctx context.Context, changed func(string), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	changed("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		changed(n.Payload)
	}
}
