package bench

import (
	"math"
	"time"

	"github.com/esmd/esmd/internal/benchtest"
)

// Result is what `esmd bench` measured: the settings, the machine, and
// each round. --json writes it; docs/performance.md documents the schema.
type Result struct {
	Schema   int       `json:"schema"` // 1
	Version  string    `json:"esmd_version"`
	Started  time.Time `json:"started"`
	Settings Settings  `json:"settings"`
	Machine  Machine   `json:"machine"`
	Rounds   []*Round  `json:"rounds"`
	// Compare is set with --compare raw.
	Compare *Comparison `json:"compare,omitempty"`
	// Scale is set in scale mode (--lanes).
	Scale *ScaleResult `json:"scale,omitempty"`
	// Interrupted says the run was stopped (Ctrl-C) during its last
	// round, whose figures are those measured until then.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Settings are the benchmark's settings as run.
type Settings struct {
	Source                string  `json:"source"`
	Embedded              bool    `json:"embedded"`
	Records               int     `json:"records"`
	RecordSize            int     `json:"record_size"`
	Rate                  int     `json:"rate"`
	BatchSize             int     `json:"batch_size"`
	WindowSeconds         int     `json:"window_seconds"` // -1: the source's default
	ParallelizationFactor int     `json:"parallelization_factor,omitempty"`
	Partitions            int     `json:"partitions"`
	Filter                string  `json:"filter,omitempty"`
	MatchShare            float64 `json:"match_share"`
	FunctionDelayMs       float64 `json:"function_delay_ms"`
	InvokeMode            string  `json:"invoke_mode"`
	LambdaEndpoint        string  `json:"lambda_endpoint,omitempty"`
	Compare               string  `json:"compare,omitempty"`
	Rounds                int     `json:"rounds"`
	Lanes                 int     `json:"lanes,omitempty"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	CPUs      int       `json:"cpus"`
	GoVersion string    `json:"go_version"`
	LoadAvg   []float64 `json:"load_avg,omitempty"` // 1, 5, 15 minutes, at the start
}

// Round is one run of esmd or of the raw loop.
type Round struct {
	Kind  string `json:"kind"` // "esmd" or "raw"
	Index int    `json:"index"`
	// Wanted records should reach the function; Delivered did (each id
	// counted once); Lost = Wanted - Delivered; Duplicates are deliveries
	// of an id already delivered; FilteredIn are records the filter
	// should have dropped that were delivered.
	Wanted     int64 `json:"wanted"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	FilteredIn int64 `json:"filtered_in"`
	// LostSample lists up to 10 lost record ids.
	LostSample  []uint64 `json:"lost_sample,omitempty"`
	Invocations int64    `json:"invocations"`
	// Errors counts invocations the endpoint failed or the function
	// forwarded to answered with an error.
	Errors    int64  `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	// StartupSeconds is from the child's start to the first invocation
	// with a record; SteadySeconds from there to the last record's
	// invocation; WallSeconds is both.
	StartupSeconds float64 `json:"startup_seconds"`
	SteadySeconds  float64 `json:"steady_seconds"`
	WallSeconds    float64 `json:"wall_seconds"`
	// RecordsPerSecond and InvocationsPerSecond are over SteadySeconds
	// (over WallSeconds when the round had one invocation).
	RecordsPerSecond     float64 `json:"records_per_second"`
	InvocationsPerSecond float64 `json:"invocations_per_second"`
	// Latency is from a record's production (the producer's clock, before
	// it was sent) to the start of the invocation that carried it.
	Latency Percentiles `json:"latency"`
	// InvokeDuration is from an invocation's arrival to its answer.
	InvokeDuration Percentiles `json:"invoke_duration"`
	// BatchSize is records per invocation.
	BatchSize BatchStats `json:"batch_size"`
	// CPUSeconds and PeakRSSBytes are the child's (wait4): the broker,
	// producer and endpoint run in the bench's process, not counted.
	CPUSeconds         float64 `json:"cpu_seconds"`
	CPUMicrosPerRecord float64 `json:"cpu_us_per_record"`
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
	// HarnessCPUSeconds is the bench process's own CPU from the child's
	// start to the last record (the broker, the endpoint and, at a fixed
	// rate, the producer): the work a child makes the servers do.
	HarnessCPUSeconds         float64 `json:"harness_cpu_seconds,omitempty"`
	HarnessCPUMicrosPerRecord float64 `json:"harness_cpu_us_per_record,omitempty"`
	ExitError                 string  `json:"exit_error,omitempty"`
	Series                    []Point `json:"series"`
	SeriesStepSeconds         float64 `json:"series_step_seconds"`
	LatencyHistogram          []Bin   `json:"latency_histogram_ns"`
	BatchSizeHistogram        []Bin   `json:"batch_size_histogram"`
	ProduceSeconds            float64 `json:"produce_seconds"`
	ProducedPerSecond         float64 `json:"produced_per_second"`
	TimedOut                  bool    `json:"timed_out,omitempty"`
	Interrupted               bool    `json:"interrupted,omitempty"`
	DuplicatesExplained       string  `json:"duplicates_explained,omitempty"`
}

// BatchStats summarises the records per invocation.
type BatchStats struct {
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	P99  int64   `json:"p99"`
	Max  int64   `json:"max"`
}

// Point is one interval of a round (Round.SeriesStepSeconds long).
type Point struct {
	T                    float64 `json:"t"` // seconds from the child's start to the interval's
	Records              int64   `json:"records"`
	Invocations          int64   `json:"invocations"`
	RecordsPerSecond     float64 `json:"records_per_second"`
	InvocationsPerSecond float64 `json:"invocations_per_second"`
	P50                  float64 `json:"p50_ms"`
	P90                  float64 `json:"p90_ms"`
	P99                  float64 `json:"p99_ms"`
	Max                  float64 `json:"max_ms"`
}

// Comparison is esmd against the raw loop, over the rounds.
type Comparison struct {
	EsmdMedian float64 `json:"esmd_records_per_second_median"`
	RawMedian  float64 `json:"raw_records_per_second_median"`
	// Ratio is the median of the per-round-pair ratios esmd/raw (rounds
	// i of each kind ran one after the other).
	Ratio  float64   `json:"ratio_median"`
	Ratios []float64 `json:"ratios"`
	// CPURatio is the median of raw/esmd CPU per record (above 1: esmd
	// uses less CPU per record).
	CPURatio float64 `json:"cpu_ratio_median"`
	// RSSRatio is the median of esmd/raw peak RSS.
	RSSRatio float64 `json:"rss_ratio_median"`
	// EsmdP99 and RawP99 are the medians of the rounds' produce->invoke
	// p99 latency: the figure to compare at a fixed --rate, where both
	// deliver at the rate.
	EsmdP99 float64 `json:"esmd_p99_ms_median"`
	RawP99  float64 `json:"raw_p99_ms_median"`
}

// compare fills the comparison of esmd's rounds with the raw loop's.
func compare(rounds []*Round) *Comparison {
	var es, rs []*Round
	for _, r := range rounds {
		if r.Kind == "raw" {
			rs = append(rs, r)
		} else {
			es = append(es, r)
		}
	}
	c := &Comparison{}
	var cpu, rss []float64
	for i := range min(len(es), len(rs)) {
		c.Ratios = append(c.Ratios, round3(safeDiv(es[i].RecordsPerSecond, rs[i].RecordsPerSecond)))
		cpu = append(cpu, safeDiv(rs[i].CPUMicrosPerRecord, es[i].CPUMicrosPerRecord))
		rss = append(rss, safeDiv(float64(es[i].PeakRSSBytes), float64(rs[i].PeakRSSBytes)))
	}
	rate := func(r *Round) float64 { return r.RecordsPerSecond }
	p99 := func(r *Round) float64 { return r.Latency.P99 }
	c.EsmdP99 = round3(benchtest.Median(mapf(es, p99)))
	c.RawP99 = round3(benchtest.Median(mapf(rs, p99)))
	c.EsmdMedian = round3(benchtest.Median(mapf(es, rate)))
	c.RawMedian = round3(benchtest.Median(mapf(rs, rate)))
	c.Ratio = round3(benchtest.Median(c.Ratios))
	c.CPURatio = round3(benchtest.Median(cpu))
	c.RSSRatio = round3(benchtest.Median(rss))
	return c
}

func mapf(rs []*Round, f func(*Round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
