package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// BenchmarkCheckpoints measures the machinery's own ceiling, without a
// server: records/s from in-memory shards, acknowledged in batches of 100
// (one Done per batch, as the pipeline does) into a bbolt store, with a
// checkpoint write per batch (sync) and coalesced every 100 ms.
//
//	go test -run '^$' -bench Checkpoints -benchtime 3x ./pollers/stream/
func BenchmarkCheckpoints(b *testing.B) {
	const perShard, batch = 20000, 100
	for _, shards := range []int{1, 16} {
		for _, iv := range []time.Duration{0, 100 * time.Millisecond} {
			label := "sync"
			if iv > 0 {
				label = iv.String()
			}
			b.Run(fmt.Sprintf("shards=%d/checkpoint=%s", shards, label), func(b *testing.B) {
				f := newFake()
				for s := range shards {
					id := fmt.Sprintf("s%02d", s)
					f.shard(id)
					var bodies []string
					for i := range perShard / shards {
						bodies = append(bodies, fmt.Sprint(i))
					}
					f.put(id, bodies...)
				}
				total := perShard / shards * shards
				start := time.Now()
				for b.Loop() {
					st, err := checkpoint.Open(b.TempDir())
					if err != nil {
						b.Fatal(err)
					}
					p, err := stream.New(context.Background(), f, stream.Config{Common: stream.Common{Mapping: "bench", Positions: st, Limit: 1000,
						EmptyWait: time.Millisecond, MaxWait: 5 * time.Millisecond, CheckpointInterval: iv}})
					if err != nil {
						b.Fatal(err)
					}
					for got := 0; got < total; {
						recs, err := p.Poll(context.Background())
						if err != nil {
							b.Fatal(err)
						}
						got += len(recs)
						byLane := map[string][]source.Record{}
						for _, r := range recs {
							byLane[r.Lane] = append(byLane[r.Lane], r)
						}
						for _, lr := range byLane {
							for i := 0; i < len(lr); i += batch {
								if err := p.Done(context.Background(), lr[i:min(i+batch, len(lr))]); err != nil {
									b.Fatal(err)
								}
							}
						}
					}
					p.Close()
					st.Close()
				}
				b.ReportMetric(float64(total*b.N)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}
