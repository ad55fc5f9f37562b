package bench

import (
	"context"
	"errors"
)

// ScaleResult is what scale mode measured.
type ScaleResult struct{}

func runScale(ctx context.Context, cfg *Config, out Output, res *Result) error {
	return errors.New("scale mode: not built yet")
}
