// Package benchtest holds what the test-file throughput benchmarks of the
// pollers and the batcher share: the process's CPU time, the median of
// rounds and their formatting. Benchmarks report CPU time per record next
// to wall time because a shared machine inflates wall time with other
// processes' load. The end-to-end instrument is `esmd bench` (package
// bench), whose compare medians use Median too; these helpers serve the
// in-process benchmarks beside the code.
package benchtest

import (
	"fmt"
	"slices"
)

// Median is the median of xs (the mean of the middle two for an even
// count), 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	if len(ys)%2 == 0 {
		return (ys[len(ys)/2-1] + ys[len(ys)/2]) / 2
	}
	return ys[len(ys)/2]
}

// Format writes each of xs with prec decimals, for a log line of rounds.
func Format(xs []float64, prec int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%.*f", prec, x)
	}
	return out
}
