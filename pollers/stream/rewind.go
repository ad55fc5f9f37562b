package stream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// markerAt prefixes the checkpoint a rewind to a timestamp stores.
const markerAt = AtTimestamp + ":"

// marker is the checkpoint that makes a shard's next iterator start at a
// replay position rather than after a sequence number. Sequence numbers
// are digits, so a marker is never taken for one.
func marker(to esm.Position) string {
	if to.Type == esm.ReplayAtTimestamp {
		return markerAt + strconv.FormatInt(to.Timestamp.UnixNano(), 10)
	}
	return to.Type
}

// parseMarker reads a checkpoint written by Rewind.
func parseMarker(cp string) (Position, bool) {
	switch {
	case cp == TrimHorizon || cp == Latest:
		return Position{Type: cp}, true
	case strings.HasPrefix(cp, markerAt):
		ns, err := strconv.ParseInt(cp[len(markerAt):], 10, 64)
		if err != nil {
			return Position{}, false
		}
		return Position{Type: AtTimestamp, Timestamp: time.Unix(0, ns)}, true
	}
	return Position{}, false
}

// Rewind replaces the checkpoints of every shard of a stream (open and
// closed, as the listing shows them) so that a poller started next reads
// from `to`: every shard at TRIM_HORIZON or at the timestamp, which keeps
// the order of parents before children; for LATEST, closed shards are
// finished (SHARD_END) and open ones start at their tip. The mapping's
// poller must be stopped.
func Rewind(ctx context.Context, cl Client, store source.Checkpoints, mapping string, to esm.Position) error {
	shards, err := cl.Shards(ctx)
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		return fmt.Errorf("stream: the stream has no shards to rewind")
	}
	pos := make(map[string]string, len(shards))
	for _, s := range shards {
		switch {
		case to.Type == esm.ReplayLatest && s.Closed:
			pos[s.ID] = ShardEnd
		default:
			pos[s.ID] = marker(to)
		}
	}
	if r, ok := store.(PositionResetter); ok {
		return r.ResetPositions(ctx, mapping, pos)
	}
	return store.SetPositions(ctx, mapping, pos)
}

// PositionResetter is implemented by a store whose lanes are leased
// (pgstore.Store): ResetPositions writes positions and takes every lease
// of the mapping from its holder in one transaction, so that workers still
// reading the mapping write over none of them and read the shards again
// from there.
type PositionResetter interface {
	ResetPositions(ctx context.Context, mapping string, positions map[string]string) error
}
