package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/esmd/esmd/esm"
)

// Output is where a run reports progress: a live line when Terminal, plain
// lines every few seconds otherwise.
type Output struct {
	W        io.Writer
	Terminal bool
	Version  string
}

// Run runs the benchmark cfg describes and returns what it measured. A
// round that loses records is not an error: the result says so.
func Run(ctx context.Context, cfg Config, out Output) (*Result, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res := &Result{Schema: 1, Version: out.Version, Started: time.Now().UTC(), Settings: settingsOf(&cfg), Machine: machine()}
	if cfg.Lanes > 0 {
		return res, runScale(ctx, &cfg, out, res)
	}
	t, err := newTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ep := &Endpoint{Delay: cfg.FunctionDelay, Forward: cfg.LambdaEndpoint}
	if err := ep.Start(); err != nil {
		return nil, err
	}
	defer ep.Close()
	dir, err := os.MkdirTemp("", "esmd-bench-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &bencher{cfg: &cfg, t: t, ep: ep, dir: dir, out: out, stamp: time.Now().Format("150405")}
	if (cfg.MatchShare < 1 || cfg.Filter != "") && t.Filter() == "" {
		return nil, fmt.Errorf("bench: %s mappings take no FilterCriteria (Lambda does not filter them)", cfg.Source)
	}
	for i := range cfg.Rounds {
		kinds := []string{"esmd"}
		if cfg.Compare == "raw" {
			// Alternate which goes first: the machine's speed drifts.
			kinds = []string{"esmd", "raw"}
			if i%2 == 1 {
				kinds = []string{"raw", "esmd"}
			}
		}
		for _, k := range kinds {
			r, err := b.round(ctx, k, i+1)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", k, i+1, err)
			}
			res.Rounds = append(res.Rounds, r)
			fmt.Fprintln(out.W, roundLine(r))
			if r.Interrupted {
				// Ctrl-C: what was measured so far is the result.
				res.Interrupted = true
				return res, nil
			}
		}
	}
	if cfg.Compare == "raw" {
		res.Compare = compare(res.Rounds)
	}
	return res, nil
}

// bencher runs the rounds of one benchmark.
type bencher struct {
	cfg   *Config
	t     Target
	ep    *Endpoint
	dir   string
	out   Output
	stamp string
}

// round runs one round of kind ("esmd" or "raw").
func (b *bencher) round(ctx context.Context, kind string, idx int) (*Round, error) {
	cfg := b.cfg
	name := fmt.Sprintf("%s-%s-%d", b.stamp, kind, idx)
	if err := b.t.Prepare(ctx, name); err != nil {
		return nil, err
	}
	n := uint64(cfg.Records)
	r := &Round{Kind: kind, Index: idx, Wanted: wanted(n, cfg.MatchShare)}
	gen := &generator{t: b.t, size: cfg.RecordSize, share: cfg.MatchShare}
	if cfg.Rate == 0 {
		start := time.Now()
		last := start
		if err := gen.produce(ctx, 0, n, 0, func(done uint64) {
			if now := time.Now(); b.out.Terminal || now.Sub(last) >= 5*time.Second {
				last = now
				b.progress(fmt.Sprintf("%s round %d: producing %d/%d records", kind, idx, done, n), false)
			}
		}); err != nil {
			return nil, fmt.Errorf("produce: %w", err)
		}
		r.ProduceSeconds = time.Since(start).Seconds()
		r.ProducedPerSecond = round3(float64(n) / r.ProduceSeconds)
	}

	errs0, _ := b.ep.Errors()
	// The broker holds every record produced: collect now, so that a
	// collection of that heap does not fall inside this round more than
	// the next.
	runtime.GC()
	cpu0 := selfCPU()
	c, err := b.start(kind, name, idx)
	if err != nil {
		return nil, err
	}
	coll := NewCollector(n, r.Wanted, c.started)
	b.ep.Use(coll)
	defer b.ep.Use(nil)
	var wg sync.WaitGroup
	pctx, stopProducing := context.WithCancel(ctx)
	defer func() { stopProducing(); wg.Wait() }()
	perr := make(chan error, 1)
	if cfg.Rate > 0 {
		// Produce only once the child invokes: a probe record (an id
		// past the round's) every 200 ms until one arrives, so start-up
		// does not count as latency.
		if err := b.awaitProbe(pctx, c, coll, gen, n); err != nil {
			_ = c.stop(30 * time.Second)
			return nil, err
		}
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := gen.produce(pctx, 0, n, cfg.Rate, nil)
			if err != nil && pctx.Err() == nil {
				perr <- err
			}
			r.ProduceSeconds = time.Since(start).Seconds()
		}()
	}
	err = b.await(ctx, kind, idx, c, coll, r, perr)
	if err != nil && ctx.Err() != nil {
		r.Interrupted, err = true, nil
	}
	harness := selfCPU() - cpu0
	stopProducing()
	wg.Wait()
	// The last record arrived with its invocation: let it finish before
	// the child is stopped, so its duration counts and nothing is cut.
	b.ep.Quiesce(10 * time.Second)
	if err := c.stop(30 * time.Second); err != nil && r.ExitError == "" {
		r.ExitError = err.Error()
	}
	if err != nil {
		return nil, err
	}
	if r.ProduceSeconds > 0 && cfg.Rate > 0 {
		r.ProducedPerSecond = round3(float64(n) / r.ProduceSeconds)
	}
	b.finish(r, c, coll)
	if harness > 0 {
		r.HarnessCPUSeconds = round3(harness.Seconds())
		r.HarnessCPUMicrosPerRecord = round3(safeDiv(float64(harness.Microseconds()), float64(max(r.Delivered, 1))))
	}
	errs, last := b.ep.Errors()
	if r.Errors = errs - errs0; r.Errors > 0 {
		r.LastError = last
	}
	return r, nil
}

// start starts the child of kind for the round named name.
func (b *bencher) start(kind, name string, idx int) (*child, error) {
	cfg := b.cfg
	env := childEnvOf(b.t)
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-round%d.pprof", kind, idx)))
		if err != nil {
			return nil, err
		}
		heap := strings.TrimSuffix(abs, ".pprof") + ".heap.pprof"
		env = append(env, "ESMD_CPUPROFILE="+abs, "ESMD_MEMPROFILE="+heap)
	}
	if kind == "raw" {
		s := b.t.Raw()
		s.Source, s.BatchSize, s.Window = cfg.Source, cfg.BatchSize, cfg.Window
		if s.Window < 0 {
			s.Window = defaultWindow(cfg.Source)
		}
		s.Filter = cfg.MatchShare < 1 || cfg.Filter != ""
		s.Lambda, s.RIE, s.Region = b.ep.URL(), cfg.InvokeMode == "rie", region()
		return startRaw(cfg, &s, env)
	}
	dir, err := os.MkdirTemp(b.dir, name+"-*")
	if err != nil {
		return nil, err
	}
	var flags []string
	if f, ok := b.t.(flagger); ok {
		if flags, err = f.EsmdFlags(dir); err != nil {
			return nil, err
		}
	}
	return startEsmd(cfg, dir, b.mapping(), b.ep.URL(), flags, env)
}

// mapping is the round's mapping with the bench's batching and filter.
func (b *bencher) mapping() *esm.Config {
	cfg := b.cfg
	m := b.t.Mapping()
	m.FunctionName = ptr(benchFunction)
	m.BatchSize = ptr(int64(cfg.BatchSize))
	if cfg.Window >= 0 {
		m.MaximumBatchingWindowInSeconds = ptr(int64(cfg.Window / time.Second))
	}
	if cfg.ParallelizationFactor > 0 {
		m.ParallelizationFactor = ptr(int64(cfg.ParallelizationFactor))
	}
	if f := b.filter(); f != "" {
		m.FilterCriteria = &esm.FilterCriteria{Filters: []esm.Filter{{Pattern: ptr(f)}}}
	}
	return m
}

// filter is the mapping's filter pattern: --filter, else the source's
// "kind" pattern when only a share of records match.
func (b *bencher) filter() string {
	if b.cfg.Filter != "" {
		return b.cfg.Filter
	}
	if b.cfg.MatchShare < 1 {
		return b.t.Filter()
	}
	return ""
}

// awaitProbe produces probe records until the child invokes one.
func (b *bencher) awaitProbe(ctx context.Context, c *child, coll *Collector, gen *generator, n uint64) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(max(b.cfg.Timeout, time.Minute))
	for probe := n; ; probe++ {
		if err := gen.produce(ctx, probe, probe+1, 0, nil); err != nil {
			return fmt.Errorf("produce probe: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done():
			return fmt.Errorf("exited before the first invocation: %s", c.stderr)
		case <-tick.C:
		}
		for id := n; id <= probe; id++ {
			if coll.Probed(id) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no invocation within %v of the start", time.Until(deadline)+max(b.cfg.Timeout, time.Minute))
		}
	}
}

// await waits until every wanted record arrived, nothing arrived for
// cfg.Timeout, the child exited, or ctx is done, printing progress.
func (b *bencher) await(ctx context.Context, kind string, idx int, c *child, coll *Collector, r *Round, perr <-chan error) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, lastChange, lastPrint := int64(-1), time.Now(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-perr:
			return fmt.Errorf("produce: %w", err)
		case <-c.done():
			if !coll.Done() {
				r.ExitError = fmt.Sprintf("exited before every record arrived: %v %s", c.err, c.stderr)
			}
			return nil
		case <-coll.progress:
		case <-tick.C:
		}
		if coll.Done() {
			b.progress("", true)
			return nil
		}
		s := coll.Snapshot()
		now := time.Now()
		if s.Unique != last {
			last, lastChange = s.Unique, now
		} else if now.Sub(lastChange) > b.cfg.Timeout {
			r.TimedOut = true
			b.progress("", true)
			return nil
		}
		if b.out.Terminal || now.Sub(lastPrint) >= 5*time.Second {
			lastPrint = now
			b.progress(progressLine(kind, idx, s, r.Wanted, c.started, now), false)
		}
	}
}

// progressLine is "esmd round 1: 12345/200000 records  45678 rec/s  p50 1.2 ms p99 3.4 ms  ETA 3s".
func progressLine(kind string, idx int, s Snapshot, want int64, started, now time.Time) string {
	var rate float64
	if !s.First.IsZero() && s.Last.After(s.First) {
		rate = float64(s.Unique) / s.Last.Sub(s.First).Seconds()
	}
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(want-s.Unique) / rate * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%s round %d: %d/%d records  %.0f rec/s  %d invocations  latency p50 %.1f ms p99 %.1f ms  %s elapsed  ETA %s",
		kind, idx, s.Unique, want, rate, s.Invocations, s.Latency.P50, s.Latency.P99, now.Sub(started).Round(time.Second), eta)
}

// progress prints a progress line: in place on a terminal (clear ends the
// line), as its own line otherwise.
func (b *bencher) progress(line string, clear bool) {
	if b.out.Terminal {
		if clear {
			fmt.Fprint(b.out.W, "\r\x1b[K")
			return
		}
		fmt.Fprintf(b.out.W, "\r%s\x1b[K", line)
		return
	}
	if line != "" {
		fmt.Fprintln(b.out.W, line)
	}
}

// finish fills a round's figures from its collector and child.
func (b *bencher) finish(r *Round, c *child, coll *Collector) {
	coll.mu.Lock()
	r.Delivered, r.Duplicates, r.FilteredIn, r.Invocations = coll.unique, coll.dups, coll.filteredIn, coll.invocations
	if !r.Interrupted {
		r.Lost = r.Wanted - r.Delivered // else some were never produced
	}
	r.Latency, r.InvokeDuration = coll.latency.Percentiles(), coll.duration.Percentiles()
	r.BatchSize = BatchStats{Mean: round3(coll.batches.Mean()), P50: coll.batches.Quantile(0.5), P99: coll.batches.Quantile(0.99), Max: coll.batches.Max()}
	r.LatencyHistogram, r.BatchSizeHistogram = coll.latency.Bins(), coll.batches.Bins()
	step := coll.step.Seconds()
	r.SeriesStepSeconds = step
	for i := range coll.series {
		iv := &coll.series[i]
		r.Series = append(r.Series, Point{T: round3(float64(i) * step), Records: iv.records, Invocations: iv.invocations,
			RecordsPerSecond: round3(float64(iv.records) / step), InvocationsPerSecond: round3(float64(iv.invocations) / step),
			P50: ms(iv.latency.Quantile(0.5)), P90: ms(iv.latency.Quantile(0.9)), P99: ms(iv.latency.Quantile(0.99)), Max: ms(iv.latency.Max())})
	}
	first, last := coll.first, coll.last
	coll.mu.Unlock()
	if !first.IsZero() {
		r.StartupSeconds = round3(first.Sub(c.started).Seconds())
		r.SteadySeconds = round3(last.Sub(first).Seconds())
		r.WallSeconds = round3(last.Sub(c.started).Seconds())
		span := last.Sub(first).Seconds()
		if span <= 0 {
			span = last.Sub(c.started).Seconds()
		}
		r.RecordsPerSecond = round3(safeDiv(float64(r.Delivered), span))
		r.InvocationsPerSecond = round3(safeDiv(float64(r.Invocations), span))
	}
	if u := c.usage; u != nil {
		r.CPUSeconds = round3(u.CPU.Seconds())
		r.CPUMicrosPerRecord = round3(safeDiv(float64(u.CPU.Microseconds()), float64(max(r.Delivered, 1))))
		r.PeakRSSBytes = u.PeakRSS
	}
	if r.Lost > 0 {
		share := b.cfg.MatchShare
		r.LostSample = coll.missing(func(id uint64) bool { return matches(id, share) }, 10)
	}
	if r.Duplicates > 0 {
		r.DuplicatesExplained = "at-least-once delivery: records invoked again after a batch was retried, a consumer group rebalanced, or the child stopped before its last acknowledgement was written"
	}
}

// generator writes numbered records to a target.
type generator struct {
	t     Target
	size  int
	share float64
}

// produce writes records [from, to), at rate records/s (0: as fast as the
// source takes them), calling progress (when not nil) after each chunk.
func (g *generator) produce(ctx context.Context, from, to uint64, rate int, progress func(done uint64)) error {
	const chunk = 512
	bodies := make([][]byte, 0, chunk)
	start := time.Now()
	var tick *time.Ticker
	if rate > 0 {
		tick = time.NewTicker(time.Millisecond * time.Duration(max(1, min(20, 1000*chunk/rate))))
		defer tick.Stop()
	}
	for id := from; id < to; {
		k := uint64(chunk)
		if rate > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
			due := from + uint64(time.Since(start).Seconds()*float64(rate))
			if due <= id {
				continue
			}
			k = min(k, due-id)
		}
		k = min(k, to-id)
		bodies = bodies[:0]
		now := time.Now().UnixNano()
		for j := range k {
			bodies = append(bodies, Record(nil, id+j, now, matches(id+j, g.share), g.size))
		}
		if err := g.t.Produce(ctx, bodies); err != nil {
			return err
		}
		id += k
		if progress != nil && (id-from)%(chunk*64) == 0 {
			progress(id - from)
		}
	}
	return nil
}

func settingsOf(c *Config) Settings {
	return Settings{
		Source: c.Source, Embedded: c.Source == "kafka" && len(c.KafkaBootstrap) == 0 || c.Source == "dynamodb" || c.Source == "documentdb" && c.DocDBURI == "",
		Records: c.Records, RecordSize: c.RecordSize, Rate: c.Rate, BatchSize: c.BatchSize,
		WindowSeconds: windowSeconds(c.Window), ParallelizationFactor: c.ParallelizationFactor,
		Partitions: c.Partitions, Filter: c.Filter, MatchShare: c.MatchShare,
		FunctionDelayMs: ms(int64(c.FunctionDelay)), InvokeMode: c.InvokeMode, LambdaEndpoint: c.LambdaEndpoint,
		Compare: c.Compare, Rounds: c.Rounds, Lanes: c.Lanes,
	}
}

// windowSeconds is the mapping's window in seconds, -1 for the source's
// default.
func windowSeconds(w time.Duration) int {
	if w < 0 {
		return -1
	}
	return int(w / time.Second)
}

func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		var l1, l5, l15 float64
		if _, err := fmt.Sscan(string(b), &l1, &l5, &l15); err == nil {
			m.LoadAvg = []float64{l1, l5, l15}
		}
	}
	return m
}

// roundLine is one round's figures on one line.
func roundLine(r *Round) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-4s round %d: %d/%d records in %.2fs (+%.2fs start-up): %.0f records/s, %.0f invocations/s, batch mean %.1f; latency p50 %.1f ms p99 %.1f ms; CPU %.1f us/record, peak RSS %.0f MB",
		r.Kind, r.Index, r.Delivered, r.Wanted, r.SteadySeconds, r.StartupSeconds, r.RecordsPerSecond, r.InvocationsPerSecond,
		r.BatchSize.Mean, r.Latency.P50, r.Latency.P99, r.CPUMicrosPerRecord, float64(r.PeakRSSBytes)/(1<<20))
	if r.Lost > 0 || r.Duplicates > 0 || r.FilteredIn > 0 {
		fmt.Fprintf(&sb, "; LOST %d, duplicates %d, filtered in %d", r.Lost, r.Duplicates, r.FilteredIn)
	}
	if r.ExitError != "" {
		fmt.Fprintf(&sb, "; child: %s", r.ExitError)
	}
	return sb.String()
}
