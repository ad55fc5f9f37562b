package pipeline

import (
	"context"
	"net/http"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// CanRewind implements esm.Rewinder: a source whose descriptor has Rewind
// can be rewound; a queue cannot.
func (r *Runner) CanRewind(_ context.Context, m *esm.Mapping) error {
	switch {
	case r.Source != nil && r.Source.Rewind != nil:
		return nil
	case r.Source != nil && r.Source.Delivery == source.Queue:
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
			Message: "Replay is not supported for " + string(m.Source) + " event sources: a queue keeps no position to go back to (a message is deleted once it was processed)."}
	}
	return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
		Message: "esmd cannot replay " + string(m.Source) + " event sources."}
}

// Rewind implements esm.Rewinder with the source's descriptor.
func (r *Runner) Rewind(ctx context.Context, m *esm.Mapping, to esm.Position) error {
	if err := r.CanRewind(ctx, m); err != nil {
		return err
	}
	return r.Source.Rewind(ctx, r.env(), m, to)
}

// CanRewind implements esm.Rewinder with the Runner that serves m.
func (m Mux) CanRewind(ctx context.Context, mp *esm.Mapping) error {
	r, err := m.pick(ctx, &mp.Config)
	if err != nil {
		return err
	}
	return r.CanRewind(ctx, mp)
}

// Rewind implements esm.Rewinder with the Runner that serves m.
func (m Mux) Rewind(ctx context.Context, mp *esm.Mapping, to esm.Position) error {
	r, err := m.pick(ctx, &mp.Config)
	if err != nil {
		return err
	}
	return r.Rewind(ctx, mp, to)
}
