package main

import (
	"context"
	"io"

	"github.com/esmd/esmd/internal/filtercli"
)

func filterCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return filtercli.Main(ctx, args, stdin, stdout, stderr)
}
