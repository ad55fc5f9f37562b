// Package batcher groups records of one lane into invocation batches: BatchSize,
// the batching window, the 6 MB payload cap, ParallelizationFactor sub-lanes and
// tumbling windows. It knows nothing about where records come from.
package batcher
