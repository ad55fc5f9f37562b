package batcher

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/esmd/esmd/internal/benchtest"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// BenchmarkBatch measures the batching overhead per record: AddAll of a
// 100-record poll result of 1 KB records per lane, Next and Done of the
// batch, with BatchSize 100 and no window (the size and count checks run on
// every record). One op is one round over all lanes. Reported: ns/record
// (wall), cpu-ns/record (process CPU time, GC included: steadier than wall
// time on a loaded machine), allocs/record and records/s.
func BenchmarkBatch(b *testing.B) {
	for _, bc := range []struct {
		name  string
		lanes int
		pf    int
	}{
		{"lanes=1", 1, 1},
		{"lanes=64", 64, 1},
		{"lanes=64/pf=4", 64, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const batch, size = 100, 1024
			bt, err := New(Policy{BatchSize: batch, ParallelizationFactor: bc.pf}, payload.Records(""))
			if err != nil {
				b.Fatal(err)
			}
			defer bt.Close()
			polls := make([][]source.Record, bc.lanes)
			data := jsonString(size)
			for l := range polls {
				lane := "shardId-" + strconv.Itoa(l)
				for i := range batch {
					// With a factor > 1 each key gets its own poll result so
					// every sub-lane still fills 100-record batches.
					key := "k"
					polls[l] = append(polls[l], source.Record{Lane: lane, Key: key, ID: strconv.Itoa(i), Data: data})
				}
			}
			if bc.pf > 1 {
				// Spread the poll over the sub-lanes: batches are smaller
				// (about 100/pf records) and there are pf of them per lane.
				for l := range polls {
					for i := range polls[l] {
						polls[l][i].Key = "k" + strconv.Itoa(i%bc.pf)
					}
				}
			}
			ctx := context.Background()
			records := 0
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := benchtest.CPUTime()
			b.ReportAllocs()
			for b.Loop() {
				for l := range polls {
					if err := bt.AddAll(polls[l]); err != nil {
						b.Fatal(err)
					}
				}
				for got := 0; got < bc.lanes*batch; {
					x, err := bt.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					got += len(x.Records)
					if err := bt.Done(x, nil); err != nil {
						b.Fatal(err)
					}
				}
				records += bc.lanes * batch
			}
			cpu := benchtest.CPUTime() - cpu0
			runtime.ReadMemStats(&ms1)
			if records > 0 {
				if cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(records), "cpu-ns/record")
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(records), "allocs/record")
				b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			}
		})
	}
}
