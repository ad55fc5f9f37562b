package bench

import (
	"slices"
	"testing"
	"time"
)

func TestCollector(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	// tok is record id, produced 10 ms after start, matching unless skip.
	tok := func(id uint64, skip ...bool) token {
		return token{id: id, produced: at(10).UnixNano(), match: len(skip) == 0}
	}
	type invoke struct {
		at   time.Time
		toks []token
	}
	tests := []struct {
		name                     string
		n                        uint64
		want                     int64
		invokes                  []invoke
		unique, dups, filteredIn int64
		done                     bool
		missing                  []uint64
		batchMax, latencyMaxMs   float64
		seriesRecords            []int64
		probed                   uint64
	}{
		{
			name: "every record once", n: 4, want: 4,
			invokes: []invoke{{at(20), []token{tok(0), tok(1)}}, {at(1500), []token{tok(2), tok(3)}}},
			unique:  4, done: true, batchMax: 2, latencyMaxMs: 1490,
			seriesRecords: []int64{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2},
		},
		{
			name: "duplicates are counted once", n: 3, want: 3,
			invokes: []invoke{{at(20), []token{tok(0), tok(1)}}, {at(30), []token{tok(1), tok(2)}}, {at(40), []token{tok(0)}}},
			unique:  3, dups: 2, done: true, batchMax: 2, latencyMaxMs: 20, seriesRecords: []int64{3},
		},
		{
			name: "lost records are missing", n: 5, want: 5,
			invokes: []invoke{{at(20), []token{tok(0), tok(3)}}},
			unique:  2, missing: []uint64{1, 2, 4}, batchMax: 2, latencyMaxMs: 10, seriesRecords: []int64{2},
		},
		{
			name: "records the filter drops are counted apart", n: 3, want: 2,
			invokes: []invoke{{at(20), []token{tok(0), tok(1, true), tok(2)}}},
			unique:  2, filteredIn: 1, done: true, batchMax: 3, latencyMaxMs: 10, seriesRecords: []int64{2},
		},
		{
			name: "probes are not records", n: 2, want: 2,
			invokes: []invoke{{at(20), []token{tok(7)}}, {at(2100), nil}},
			missing: []uint64{0, 1}, batchMax: 1, probed: 7, seriesRecords: make([]int64, 22),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(tt.n, tt.want, start)
			for _, inv := range tt.invokes {
				c.Observe(inv.at, inv.toks)
				c.ObserveDuration(time.Millisecond)
			}
			s := c.Snapshot()
			if s.Unique != tt.unique || s.Dups != tt.dups || s.FilteredIn != tt.filteredIn || s.Invocations != int64(len(tt.invokes)) {
				t.Errorf("unique %d dups %d filtered in %d invocations %d, want %d %d %d %d",
					s.Unique, s.Dups, s.FilteredIn, s.Invocations, tt.unique, tt.dups, tt.filteredIn, len(tt.invokes))
			}
			if c.Done() != tt.done {
				t.Errorf("Done() = %v", c.Done())
			}
			if got := c.missing(func(uint64) bool { return true }, 10); !slices.Equal(got, tt.missing) {
				t.Errorf("missing %v, want %v", got, tt.missing)
			}
			if got := float64(c.batches.Max()); got != tt.batchMax {
				t.Errorf("largest batch %v, want %v", got, tt.batchMax)
			}
			if got := s.Latency.Max; got != tt.latencyMaxMs {
				t.Errorf("latency max %v ms, want %v", got, tt.latencyMaxMs)
			}
			var series []int64
			for _, iv := range c.series {
				series = append(series, iv.records)
			}
			if !slices.Equal(series, tt.seriesRecords) {
				t.Errorf("records per second %v, want %v", series, tt.seriesRecords)
			}
			if tt.probed != 0 && !c.Probed(tt.probed) {
				t.Errorf("probe %d not seen", tt.probed)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	for _, share := range []float64{0.1, 0.5, 0.9} {
		got := float64(wanted(100000, share)) / 100000
		if got < share-0.01 || got > share+0.01 {
			t.Errorf("share %v: %v of records match", share, got)
		}
	}
	if wanted(10, 1) != 10 {
		t.Error("share 1: not every record matches")
	}
}

func TestCompare(t *testing.T) {
	rounds := []*Round{
		{Kind: "esmd", RecordsPerSecond: 90, CPUMicrosPerRecord: 10, PeakRSSBytes: 200, Latency: Percentiles{P99: 7}},
		{Kind: "raw", RecordsPerSecond: 100, CPUMicrosPerRecord: 8, PeakRSSBytes: 100},
		{Kind: "raw", RecordsPerSecond: 100, CPUMicrosPerRecord: 8, PeakRSSBytes: 100},
		{Kind: "esmd", RecordsPerSecond: 50, CPUMicrosPerRecord: 8, PeakRSSBytes: 100},
		{Kind: "esmd", RecordsPerSecond: 120, CPUMicrosPerRecord: 8, PeakRSSBytes: 150},
		{Kind: "raw", RecordsPerSecond: 100, CPUMicrosPerRecord: 8, PeakRSSBytes: 100},
	}
	c := compare(rounds)
	want := Comparison{EsmdMedian: 90, RawMedian: 100, Ratio: 0.9, Ratios: []float64{0.9, 0.5, 1.2}, CPURatio: 1, RSSRatio: 1.5, EsmdP99: 0}
	if c.EsmdMedian != want.EsmdMedian || c.RawMedian != want.RawMedian || c.Ratio != want.Ratio ||
		!slices.Equal(c.Ratios, want.Ratios) || c.CPURatio != want.CPURatio || c.RSSRatio != want.RSSRatio {
		t.Errorf("compare = %+v, want %+v", *c, want)
	}
}

// TestCollectorSeriesCompacts: a long round keeps at most maxPoints
// intervals, merging neighbours, with every record still counted.
func TestCollectorSeriesCompacts(t *testing.T) {
	start := time.Unix(0, 0)
	c := NewCollector(1000, 1000, start)
	for id := range uint64(1000) {
		at := start.Add(time.Duration(id) * 150 * time.Millisecond) // 150 s in all
		c.Observe(at, []token{{id: id, produced: at.UnixNano(), match: true}})
	}
	if len(c.series) > maxPoints || c.step != 400*time.Millisecond {
		t.Fatalf("%d intervals of %v, want at most %d of 400ms", len(c.series), c.step, maxPoints)
	}
	var records, invocations int64
	var lat Histogram
	for _, iv := range c.series {
		records += iv.records
		invocations += iv.invocations
		lat.Merge(&iv.latency)
	}
	if records != 1000 || invocations != 1000 || lat.Count() != 1000 {
		t.Errorf("series holds %d records, %d invocations, %d latencies; want 1000 each", records, invocations, lat.Count())
	}
}
