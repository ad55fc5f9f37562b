package pipeline

import (
	"context"
	"fmt"

	"github.com/esmd/esmd/esm"
)

// Mux is the esm.Runner of a Source that several descriptors share
// (source.Descriptor.Claims): each mapping runs on, and is checked by, the
// first Runner whose descriptor claims it, or the first without Claims.
type Mux []*Runner

// pick returns the Runner that serves a mapping's configuration.
func (m Mux) pick(ctx context.Context, cfg *esm.Config) (*Runner, error) {
	var fallback *Runner
	for _, r := range m {
		if r.Source.Claims == nil {
			if fallback == nil {
				fallback = r
			}
			continue
		}
		ok, err := r.Source.Claims(ctx, r.env(), cfg)
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
	}
	if fallback == nil {
		return nil, fmt.Errorf("no source serves this mapping")
	}
	return fallback, nil
}

// Run implements esm.Runner.
func (m Mux) Run(ctx context.Context, mp *esm.Mapping, rep esm.Reporter) error {
	r, err := m.pick(ctx, &mp.Config)
	if err != nil {
		return fmt.Errorf("open source: %w", err)
	}
	return r.Run(ctx, mp, rep)
}

// CheckSource implements esm.SourceChecker. A mapping no descriptor can
// tell yet (its broker unreachable) is not refused: Run reports it.
func (m Mux) CheckSource(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	r, err := m.pick(ctx, cfg)
	if err != nil {
		return nil
	}
	return r.CheckSource(ctx, src, cfg)
}

// CheckAccess implements esm.AccessChecker with the check of the Runner
// that serves the mapping.
func (m Mux) CheckAccess(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	r, err := m.pick(ctx, cfg)
	if err != nil {
		return nil
	}
	return r.CheckAccess(ctx, src, cfg)
}
