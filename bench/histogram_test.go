package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketBounds(t *testing.T) {
	tests := []struct {
		v      int64
		lo, hi int64
	}{
		{0, 0, 0},
		{1, 1, 1},
		{31, 31, 31},
		{32, 32, 32},
		{63, 63, 63},
		{64, 64, 65},
		{65, 64, 65},
		{127, 126, 127},
		{128, 128, 131},
		{1000, 992, 1007},
		{1 << 40, 1 << 40, 1<<40 + 1<<35 - 1},
		{1<<63 - 1, 63 << 57, 1<<63 - 1},
		{-5, 0, 0},
	}
	for _, tt := range tests {
		lo, hi := bucketBounds(bucketOf(tt.v))
		if lo != tt.lo || hi != tt.hi {
			t.Errorf("bucket of %d: [%d, %d], want [%d, %d]", tt.v, lo, hi, tt.lo, tt.hi)
		}
	}
	// Buckets are contiguous: each starts one past the last one's end.
	for i := 1; i < bucketOf(1<<62); i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d is [%d, %d] after one ending at %d", i, lo, hi, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d, %d]: bounds map to %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
	}
}

func TestQuantile(t *testing.T) {
	seq := func(from, to int64) []int64 {
		var out []int64
		for v := from; v <= to; v++ {
			out = append(out, v)
		}
		return out
	}
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []int64{7}, 0.99, 7},
		{"small values are exact", seq(1, 31), 0.5, 16},
		{"1..100 p50", seq(1, 100), 0.5, 50}, // values below 64 have a bucket each
		{"1..100 p99", seq(1, 100), 0.99, 99},
		{"1..100 p100 is the max", seq(1, 100), 1, 100},
		{"kept within the max", []int64{1000, 1000, 1000}, 0.5, 1000},
		{"kept within the min", []int64{993, 993}, 0.1, 1007 - 14}, // bucket [992, 1007]: min 993
		{"outlier at p99.9: the end of 999's bucket", append(seq(1, 999), 1_000_000), 0.999, 1007},
		{"outlier at max", append(seq(1, 999), 1_000_000), 1, 1_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			if got := h.Quantile(tt.q); got != tt.want {
				t.Errorf("Quantile(%v) = %d, want %d", tt.q, got, tt.want)
			}
		})
	}
}

// TestQuantileError checks the documented bound on random data: a
// quantile overstates the exact one by less than 1/32, never understates.
func TestQuantileError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(r.ExpFloat64() * 5e6) // latencies around 5 ms
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/32 {
			t.Errorf("q %v: %d, exact %d", q, got, exact)
		}
	}
}

func TestMerge(t *testing.T) {
	var a, b, all Histogram
	for v := range int64(1000) {
		all.Record(v * 37)
		if v%3 == 0 {
			a.Record(v * 37)
		} else {
			b.Record(v * 37)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Histogram{})
	if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() || m.Mean() != all.Mean() {
		t.Fatalf("merged count/min/max/mean %d/%d/%d/%v, want %d/%d/%d/%v", m.Count(), m.Min(), m.Max(), m.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
	for _, q := range []float64{0.1, 0.5, 0.9, 0.999} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q %v: merged %d, one histogram %d", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if !slices.Equal(m.Bins(), all.Bins()) {
		t.Error("merged bins differ")
	}
}

func TestPercentiles(t *testing.T) {
	var h Histogram
	for _, v := range []int64{1_000_000, 2_000_000, 3_000_000} { // 1, 2, 3 ms
		h.Record(v)
	}
	p := h.Percentiles()
	if p.Count != 3 || p.Mean != 2 || p.Max != 3 || p.P50 < 2 || p.P50 > 2.07 {
		t.Errorf("Percentiles = %+v", p)
	}
}
