package stream

import (
	"testing"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

func TestCheckpointInterval(t *testing.T) {
	cases := []struct {
		flags []string
		want  time.Duration
		err   bool
	}{
		{nil, DefaultCheckpointInterval, false},
		{[]string{"0"}, 0, false},
		{[]string{"1s", "250ms"}, 250 * time.Millisecond, false}, // the last one wins
		{[]string{"-1s"}, 0, true},
		{[]string{"soon"}, 0, true},
	}
	for _, tc := range cases {
		env := &source.Env{Flags: map[string][]string{"kinesis-checkpoint-interval": tc.flags}}
		got, err := CheckpointInterval(env, "kinesis-checkpoint-interval")
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %v, %v; want %v (error %v)", tc.flags, got, err, tc.want, tc.err)
		}
	}
}

func TestMaxPending(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	cases := []struct {
		batch, pf *int64
		want      int
	}{
		{nil, nil, 0},
		{i(100), i(1), 0},
		{nil, i(2), 400},         // default BatchSize 100
		{i(10), i(10), 200},      // two batches per sub-lane
		{i(10000), i(10), 10000}, // capped
	}
	for _, tc := range cases {
		m := &esm.Mapping{Config: esm.Config{BatchSize: tc.batch, ParallelizationFactor: tc.pf}}
		if got := MaxPending(m); got != tc.want {
			t.Errorf("BatchSize %v PF %v: %d, want %d", tc.batch, tc.pf, got, tc.want)
		}
	}
}
