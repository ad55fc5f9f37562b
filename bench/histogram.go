package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits buckets, so a bucket spans at most 1/32 (about 3%) of its
// values. Values below 2^subBits have a bucket each.
const subBits = 5

// Histogram counts non-negative int64 values (nanoseconds, record counts)
// in log-linear buckets, in the manner of HdrHistogram: constant memory per
// power of two, relative error under 3%, and histograms merge by adding
// counts. The zero value is empty and ready to use; it is not safe for
// concurrent use.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max int64
}

// bucketOf returns the bucket index of v (v < 0 counts as 0).
func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < 1<<subBits {
		return int64(i), int64(i)
	}
	shift := i>>subBits - 1
	m := int64(i&(1<<subBits-1) + 1<<subBits)
	return m << shift, (m+1)<<shift - 1
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min and Max are the smallest and largest values recorded (0 when empty).
func (h *Histogram) Min() int64 { return h.min }
func (h *Histogram) Max() int64 { return h.max }

// Mean is the mean of the values recorded (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0 < q <= 1): the largest value
// of the bucket holding the ceil(q*n)-th smallest value, kept within the
// recorded minimum and maximum, so it overstates by less than 3%. It
// returns 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}

// Bin is one bar of a histogram: Count values in [Lo, Hi].
type Bin struct {
	Lo    int64  `json:"lo"`
	Hi    int64  `json:"hi"`
	Count uint64 `json:"count"`
}

// Bins returns the non-empty buckets in order.
func (h *Histogram) Bins() []Bin {
	var out []Bin
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		lo, hi := bucketBounds(i)
		out = append(out, Bin{Lo: lo, Hi: hi, Count: c})
	}
	return out
}

// Percentiles is the summary of a latency histogram, in milliseconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Percentiles summarises a histogram of nanoseconds in milliseconds.
func (h *Histogram) Percentiles() Percentiles {
	return Percentiles{
		Count: h.n,
		Mean:  ms(int64(h.Mean())),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.max),
	}
}

// ms converts nanoseconds to milliseconds, rounded to the microsecond.
func ms(ns int64) float64 {
	return math.Round(float64(ns)/float64(time.Microsecond)) / 1000
}
