package bench

import (
	"sync"
	"time"
)

// Collector counts what the endpoint sees during one round: which record
// ids arrived (once, or more: duplicates), how long after they were
// produced, in batches of what size, and how long invocations took. It is
// safe for concurrent use.
type Collector struct {
	mu    sync.Mutex
	start time.Time
	n     uint64 // ids [0, n) are the round's records; ids >= n are probes
	want  int64  // records that should reach the function (those that match)

	seen   []uint64 // bitset of ids delivered
	probes map[uint64]bool

	unique, dups, filteredIn, invocations int64
	first, last                           time.Time // invocations that delivered a new record

	latency  Histogram // produce -> invoke start, ns
	duration Histogram // invoke start -> response, ns
	batches  Histogram // records per invocation
	series   []interval
	step     time.Duration // the length of each interval of series

	// progress is signalled (without blocking) when the round's last
	// wanted record arrives or a probe does.
	progress chan struct{}
}

// Series resolution: intervals of firstStep, doubled (neighbours merged)
// whenever a round would need more than maxPoints of them.
const (
	firstStep = 100 * time.Millisecond
	maxPoints = 600
)

// interval is one step of a round, counted from Collector.start.
type interval struct {
	records, invocations int64
	latency              Histogram
}

// NewCollector returns a collector for records [0, n), of which want
// should reach the function.
func NewCollector(n uint64, want int64, start time.Time) *Collector {
	return &Collector{
		start: start, n: n, want: want,
		seen:     make([]uint64, (n+63)/64),
		probes:   map[uint64]bool{},
		progress: make(chan struct{}, 1),
		step:     firstStep,
	}
}

// Observe records one invocation that started at t with the records of
// toks.
func (c *Collector) Observe(t time.Time, toks []token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invocations++
	c.batches.Record(int64(len(toks)))
	iv := c.interval(t)
	iv.invocations++
	fresh := false
	for _, tk := range toks {
		if tk.id >= c.n {
			if !c.probes[tk.id] {
				c.probes[tk.id] = true
				c.signal()
			}
			continue
		}
		w, bit := tk.id/64, uint64(1)<<(tk.id%64)
		if c.seen[w]&bit != 0 {
			c.dups++
			continue
		}
		c.seen[w] |= bit
		if !tk.match {
			c.filteredIn++ // delivered although the filter should drop it
			continue
		}
		c.unique++
		fresh = true
		lat := t.UnixNano() - tk.produced
		c.latency.Record(lat)
		iv.latency.Record(lat)
		iv.records++
	}
	if fresh {
		if c.first.IsZero() {
			c.first = t
		}
		c.last = t
		if c.unique >= c.want {
			c.signal()
		}
	}
}

// interval returns the series interval of time t, merging neighbours
// when t lies beyond maxPoints intervals.
func (c *Collector) interval(t time.Time) *interval {
	d := max(t.Sub(c.start), 0)
	for int(d/c.step) >= maxPoints {
		merged := c.series[:0:0]
		for i := 0; i < len(c.series); i += 2 {
			iv := c.series[i]
			if i+1 < len(c.series) {
				o := &c.series[i+1]
				iv.records += o.records
				iv.invocations += o.invocations
				iv.latency.Merge(&o.latency)
			}
			merged = append(merged, iv)
		}
		c.series, c.step = merged, 2*c.step
	}
	i := int(d / c.step)
	for len(c.series) <= i {
		c.series = append(c.series, interval{})
	}
	return &c.series[i]
}

// ObserveDuration records how long one invocation took.
func (c *Collector) ObserveDuration(d time.Duration) {
	c.mu.Lock()
	c.duration.Record(int64(d))
	c.mu.Unlock()
}

func (c *Collector) signal() {
	select {
	case c.progress <- struct{}{}:
	default:
	}
}

// Probed reports whether probe id arrived.
func (c *Collector) Probed(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probes[id]
}

// Snapshot is a consistent view of a collector's counters.
type Snapshot struct {
	Unique, Dups, FilteredIn, Invocations int64
	First, Last                           time.Time
	Latency                               Percentiles
}

// Snapshot returns the counters so far (latency percentiles included,
// which walks the histogram: call it a few times a second at most).
func (c *Collector) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Snapshot{
		Unique: c.unique, Dups: c.dups, FilteredIn: c.filteredIn, Invocations: c.invocations,
		First: c.first, Last: c.last, Latency: c.latency.Percentiles(),
	}
}

// Done reports whether every wanted record arrived.
func (c *Collector) Done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unique >= c.want
}

// missing returns up to max ids of matching records that never arrived,
// given which ids match.
func (c *Collector) missing(matches func(uint64) bool, limit int) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uint64
	for id := uint64(0); id < c.n && len(out) < limit; id++ {
		if c.seen[id/64]&(1<<(id%64)) == 0 && matches(id) {
			out = append(out, id)
		}
	}
	return out
}
