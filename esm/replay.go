package esm

import (
	"context"
	"fmt"
	"time"
)

// Replay positions (Position.Type).
const (
	ReplayTrimHorizon = "TRIM_HORIZON"
	ReplayLatest      = "LATEST"
	ReplayAtTimestamp = "AT_TIMESTAMP"
)

// Position is where esmd's replay rewinds a mapping to: the oldest record
// its source keeps (TRIM_HORIZON), the next new record (LATEST), or the
// first record at or after Timestamp (AT_TIMESTAMP).
type Position struct {
	Type      string
	Timestamp time.Time
}

// Rewinder is implemented by a Runner whose sources can be rewound
// (pipeline.Runner, through its source's descriptor).
type Rewinder interface {
	// CanRewind returns nil when m can be rewound, else an *Error saying
	// why not (a queue has no position to go back to).
	CanRewind(ctx context.Context, m *Mapping) error
	// Rewind replaces m's positions (checkpoints, committed offsets) so
	// that the pipeline started after it reads from `to`. m's pipeline is
	// stopped while it runs.
	Rewind(ctx context.Context, m *Mapping, to Position) error
}

// Replay rewinds a mapping to a position: esmd's own operation, beyond
// AWS, where StartingPosition cannot change after create. The mapping goes
// through Updating: its pipeline stops, the source's Rewinder replaces its
// positions, and the pipeline starts again (if the mapping is enabled).
// The returned mapping is in state Updating. A rewind that fails is logged
// and shown as the mapping's LastProcessingResult; the pipeline then goes
// on from the positions it had.
func (e *Engine) Replay(ctx context.Context, id string, to Position) (*Mapping, error) {
	switch to.Type {
	case ReplayTrimHorizon, ReplayLatest:
		to.Timestamp = time.Time{}
	case ReplayAtTimestamp:
		if to.Timestamp.IsZero() {
			return nil, invalidParam("AT_TIMESTAMP needs a timestamp.")
		}
	default:
		return nil, invalidParam("Replay position %q must be TRIM_HORIZON, LATEST or AT_TIMESTAMP.", to.Type)
	}
	return retryStale(func() (*Mapping, error) { return e.replay(ctx, id, to) })
}

func (e *Engine) replay(ctx context.Context, id string, to Position) (*Mapping, error) {
	e.mu.Lock()
	en, ok := e.mappings[id]
	var cur *Mapping
	if ok {
		cur = en.m.Clone()
	}
	r := e.o.runners[cur.sourceOrEmpty()]
	e.mu.Unlock()
	if !ok {
		return nil, NotFound()
	}
	if cur.State.Transitional() {
		return nil, inUse("Cannot replay the event source mapping because it is in use.")
	}
	rw, ok := r.(Rewinder)
	if !ok {
		return nil, invalidParam("esmd cannot replay %s event sources.", cur.Source)
	}
	// Asked without the lock: a source may look its broker up.
	if err := rw.CanRewind(ctx, cur); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok = e.mappings[id]
	if !ok {
		return nil, NotFound()
	}
	if en.m.State.Transitional() {
		return nil, inUse("Cannot replay the event source mapping because it is in use.")
	}
	next := en.m.Clone()
	next.State = StateUpdating
	next.LastModified = e.o.now()
	if err := e.persist(ctx, en, next); err != nil {
		return nil, err
	}
	en.m = next
	m := next.Clone()
	en.before = func(ctx context.Context) {
		if err := rw.Rewind(ctx, m, to); err != nil {
			e.o.log.Error("replay: rewinding failed; the mapping goes on from its positions", "uuid", m.UUID, "to", to.Type, "err", err)
			e.mu.Lock()
			defer e.mu.Unlock()
			if en, ok := e.mappings[m.UUID]; ok && en.m.State == StateUpdating {
				en.m.LastProcessingResult = fmt.Sprintf("PROBLEM: replay to %s failed: %v", to.Type, err)
			}
		}
	}
	e.settleLocked(en)
	return next.Clone(), nil
}

func (m *Mapping) sourceOrEmpty() Source {
	if m == nil {
		return ""
	}
	return m.Source
}
