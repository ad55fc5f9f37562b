package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ScaleResult is what scale mode measured: one esmd with a mapping of
// Lanes lanes (Kafka partitions), idle or trickling.
type ScaleResult struct {
	Lanes int `json:"lanes"`
	// Trickle is records per second spread over the lanes while
	// measuring (0: idle).
	Trickle int `json:"trickle"`
	// LanesSeen is how many lanes esmd's /metrics lists.
	LanesSeen int `json:"lanes_seen"`
	// RSS before any record (the mapping started, no lane yet) and once
	// every lane had a record; PerLaneBytes is their difference per lane.
	BaselineRSSBytes int64 `json:"baseline_rss_bytes"`
	LanesRSSBytes    int64 `json:"lanes_rss_bytes"`
	PerLaneBytes     int64 `json:"per_lane_bytes"`
	PeakRSSBytes     int64 `json:"peak_rss_bytes"`
	// Goroutines before and with the lanes.
	BaselineGoroutines int `json:"baseline_goroutines"`
	Goroutines         int `json:"goroutines"`
	// IdleCPUPercent is esmd's CPU over the measurement, in percent of
	// one core.
	IdleCPUPercent float64 `json:"idle_cpu_percent"`
	MeasureSeconds float64 `json:"measure_seconds"`
	// Delivered records of the warm-up (one per lane) and of the trickle,
	// of Wanted.
	Delivered  int64 `json:"delivered"`
	Wanted     int64 `json:"wanted"`
	Duplicates int64 `json:"duplicates"`
}

// runScale runs scale mode: a Kafka topic of cfg.Lanes partitions (the
// in-process broker or --bootstrap-servers) and one esmd mapping on it.
// It measures esmd's RSS and goroutines before and after one record went
// through every lane, then its CPU over cfg.Idle while idle (or while
// cfg.Trickle records a second arrive).
func runScale(ctx context.Context, cfg *Config, out Output, res *Result) error {
	if runtime.GOOS != "linux" {
		return errors.New("scale mode reads /proc: Linux only")
	}
	if cfg.Source != "kafka" {
		return errors.New("scale mode runs Kafka lanes (partitions): use --source kafka")
	}
	cfg.Partitions = cfg.Lanes
	res.Settings.Partitions = cfg.Lanes
	t, err := newKafka(ctx, cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	ep := &Endpoint{Delay: cfg.FunctionDelay}
	if err := ep.Start(); err != nil {
		return err
	}
	defer ep.Close()
	dir, err := os.MkdirTemp("", "esmd-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	name := "scale-" + time.Now().Format("150405")
	fmt.Fprintf(out.W, "scale: creating a topic of %d partitions\n", cfg.Lanes)
	if err := t.Prepare(ctx, name); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	b := &bencher{cfg: cfg, t: t, ep: ep, dir: dir, out: out}
	lanes := uint64(cfg.Lanes)
	trickled := uint64(cfg.Trickle) * uint64(cfg.Idle/time.Second)
	sr := &ScaleResult{Lanes: cfg.Lanes, Trickle: cfg.Trickle, Wanted: int64(lanes + trickled)}
	res.Scale = sr
	coll := NewCollector(lanes+trickled, int64(lanes), time.Now())
	ep.Use(coll)
	c, err := startEsmd(cfg, dir, b.mapping(), ep.URL(), []string{"--addr", addr}, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err := c.stop(30 * time.Second); err != nil {
			fmt.Fprintln(out.W, "scale:", err)
		}
		if c.usage != nil {
			sr.PeakRSSBytes = c.usage.PeakRSS
		}
	}()
	metrics := "http://" + addr + "/metrics"
	// The baseline: esmd serving the mapping, no record yet.
	if err := waitFor(ctx, c, 30*time.Second, func() bool { _, _, err := scrape(ctx, metrics); return err == nil }); err != nil {
		return fmt.Errorf("esmd's /metrics: %w", err)
	}
	time.Sleep(2 * time.Second) // the consumer joins its group
	sr.BaselineRSSBytes, _ = procRSS(c.cmd.Process.Pid)
	sr.BaselineGoroutines, _, _ = scrape(ctx, metrics)
	fmt.Fprintf(out.W, "scale: esmd at %.1f MB RSS, %d goroutines; one record into each of %d lanes\n",
		float64(sr.BaselineRSSBytes)/(1<<20), sr.BaselineGoroutines, cfg.Lanes)
	gen := &generator{t: t, size: cfg.RecordSize, share: 1}
	if err := gen.produce(ctx, 0, lanes, 0, nil); err != nil {
		return err
	}
	if err := waitFor(ctx, c, max(cfg.Timeout, time.Minute), coll.Done); err != nil {
		s := coll.Snapshot()
		return fmt.Errorf("%d of %d lanes' records arrived: %w", s.Unique, lanes, err)
	}
	ep.Quiesce(10 * time.Second)
	time.Sleep(2 * time.Second) // acknowledgements, commits
	sr.LanesRSSBytes, _ = procRSS(c.cmd.Process.Pid)
	sr.Goroutines, sr.LanesSeen, _ = scrape(ctx, metrics)
	sr.PerLaneBytes = (sr.LanesRSSBytes - sr.BaselineRSSBytes) / int64(lanes)
	what := "idle"
	if cfg.Trickle > 0 {
		what = fmt.Sprintf("trickling %d records/s", cfg.Trickle)
	}
	fmt.Fprintf(out.W, "scale: %d lanes at %.1f MB RSS, %d goroutines; measuring CPU for %v, %s\n",
		sr.LanesSeen, float64(sr.LanesRSSBytes)/(1<<20), sr.Goroutines, cfg.Idle, what)
	cpu0, err := procCPU(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	start := time.Now()
	if cfg.Trickle > 0 {
		coll.want = int64(lanes + trickled)
		if err := gen.produce(ctx, lanes, lanes+trickled, cfg.Trickle, nil); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(start.Add(cfg.Idle))):
	}
	cpu1, err := procCPU(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	sr.MeasureSeconds = round3(time.Since(start).Seconds())
	sr.IdleCPUPercent = round3(100 * (cpu1 - cpu0).Seconds() / time.Since(start).Seconds())
	if cfg.Trickle > 0 {
		_ = waitFor(ctx, c, cfg.Timeout, coll.Done)
	}
	s := coll.Snapshot()
	sr.Delivered, sr.Duplicates = s.Unique, s.Dups
	return nil
}

// PrintScale writes scale mode's figures.
func PrintScale(w io.Writer, s *ScaleResult) {
	fmt.Fprintf(w, "\nscale: %d lanes (%d seen in esmd's metrics), %d records/s trickling\n", s.Lanes, s.LanesSeen, s.Trickle)
	fmt.Fprintf(w, "  memory       %.1f MB RSS before any lane, %.1f MB with every lane: %.1f KB per lane; peak %.1f MB\n",
		float64(s.BaselineRSSBytes)/(1<<20), float64(s.LanesRSSBytes)/(1<<20), float64(s.PerLaneBytes)/1024, float64(s.PeakRSSBytes)/(1<<20))
	fmt.Fprintf(w, "  goroutines   %d before, %d with the lanes\n", s.BaselineGoroutines, s.Goroutines)
	fmt.Fprintf(w, "  CPU          %.2f%% of a core over %.0fs\n", s.IdleCPUPercent, s.MeasureSeconds)
	fmt.Fprintf(w, "  records      %d of %d delivered, %d duplicates\n", s.Delivered, s.Wanted, s.Duplicates)
}

// waitFor polls cond until it holds, the child exits, ctx is done or
// within passes.
func waitFor(ctx context.Context, c *child, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done():
			return fmt.Errorf("esmd exited: %v %s", c.err, c.stderr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", within)
		}
	}
	return nil
}

// scrape reads esmd's /metrics: goroutines, and lanes (the distinct lane
// labels of esmd_offset_lag or esmd_iterator_age_milliseconds).
func scrape(ctx context.Context, url string) (goroutines, lanes int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 256<<20))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			goroutines, _ = strconv.Atoi(v)
		}
		if strings.HasPrefix(line, "esmd_iterator_age_milliseconds{") || strings.HasPrefix(line, "esmd_offset_lag{") {
			if i := strings.Index(line, "lane="); i >= 0 {
				seen[strings.Fields(line[i:])[0]] = true
			}
		}
	}
	return goroutines, len(seen), sc.Err()
}

// procRSS is a process's resident set size (/proc/PID/status VmRSS).
func procRSS(pid int) (int64, error) { return procStatus(pid, "VmRSS:") }

// procStatus reads a size in kB from /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte(field)); ok {
			f := strings.Fields(string(v))
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU is a process's user+system CPU time (/proc/PID/stat, in clock
// ticks of 1/100 s, the value on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// freeAddr returns a free 127.0.0.1 port for esmd's API.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
