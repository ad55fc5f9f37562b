package documentdb

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// replayPrefix marks a checkpoint written by Rewind: the stream opens at
// that position instead of after a resume token.
const replayPrefix = "replay:"

// Rewind replaces a mapping's checkpoint so that its next change stream
// opens at `to` (esmd replay): at the oldest event the cluster retains
// (TRIM_HORIZON), at the end (LATEST), or with startAtOperationTime at the
// timestamp (AT_TIMESTAMP; an operation time is in whole seconds, so the
// events of the timestamp's second are included).
func Rewind(ctx context.Context, env *source.Env, m *esm.Mapping, to esm.Position) error {
	dc := m.Config.DocumentDBEventSourceConfig
	if dc == nil || aws.ToString(dc.DatabaseName) == "" {
		return errors.New("documentdb: the mapping names no database")
	}
	if env.Store == nil {
		return errors.New("documentdb: no checkpoint store")
	}
	cp := replayPrefix + to.Type
	if to.Type == esm.ReplayAtTimestamp {
		cp += ":" + strconv.FormatInt(to.Timestamp.Unix(), 10)
	}
	lane := Lane(aws.ToString(dc.DatabaseName), aws.ToString(dc.CollectionName))
	// A store that leases the stream (PostgreSQL, several workers) takes
	// the lease from whichever worker reads it in the same write, so that
	// its checkpoints do not overwrite the replay's.
	if r, ok := env.Store.(interface {
		ResetPositions(ctx context.Context, mapping string, positions map[string]string) error
	}); ok {
		return r.ResetPositions(ctx, m.UUID, map[string]string{lane: cp})
	}
	return env.Store.SetPosition(ctx, m.UUID, lane, cp)
}

// parseReplay reads a checkpoint written by Rewind.
func parseReplay(cp string) (pos string, at time.Time, ok bool) {
	rest, ok := strings.CutPrefix(cp, replayPrefix)
	if !ok {
		return "", time.Time{}, false
	}
	pos, sec, hasTime := strings.Cut(rest, ":")
	switch {
	case pos == TrimHorizon || pos == Latest:
		return pos, time.Time{}, !hasTime
	case pos == AtTimestamp && hasTime:
		s, err := strconv.ParseInt(sec, 10, 64)
		return pos, time.Unix(s, 0), err == nil
	}
	return "", time.Time{}, false
}
