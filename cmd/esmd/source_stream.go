package main

import (
	"fmt"
	"time"

	"github.com/esmd/esmd/esm"
)

// defaultCheckpointInterval is the default of --kinesis-checkpoint-interval
// and --dynamodb-checkpoint-interval: one store write per interval (every
// shard's latest position in one transaction) instead of one per batch.
const defaultCheckpointInterval = 100 * time.Millisecond

// checkpointInterval reads a stream source's --<flag> (the last one given),
// or returns defaultCheckpointInterval.
func checkpointInterval(env *SourceEnv, flag string) (time.Duration, error) {
	v := env.Flags[flag]
	if len(v) == 0 {
		return defaultCheckpointInterval, nil
	}
	d, err := time.ParseDuration(v[len(v)-1])
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--%s %q: want a duration >= 0", flag, v[len(v)-1])
	}
	return d, nil
}

// maxPending bounds what a shard may read past its checkpoint when the
// mapping has sub-lanes (0: the poller's default). One slow sub-lane holds
// the shard's checkpoint while the others go on, and a restart redelivers
// everything past it: two batches per sub-lane keeps that to what a crash
// would redeliver anyway.
func maxPending(m *esm.Mapping) int {
	pf := m.Config.ParallelizationFactor
	if pf == nil || *pf <= 1 {
		return 0
	}
	batch := int64(100)
	if m.Config.BatchSize != nil {
		batch = *m.Config.BatchSize
	}
	return int(min(2*batch**pf, 10000))
}
