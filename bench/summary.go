package bench

import (
	"fmt"
	"io"
	"strings"
)

// PrintSummary writes the result for people: the settings, each round's
// figures and, with --compare raw, the ratio.
func PrintSummary(w io.Writer, res *Result) {
	s := res.Settings
	if res.Scale != nil {
		fmt.Fprintf(w, "\nesmd bench --lanes %d: one Kafka mapping with a lane per partition\nmachine: %s/%s, %d CPUs, load %v, %s\n",
			res.Scale.Lanes, res.Machine.OS, res.Machine.Arch, res.Machine.CPUs, res.Machine.LoadAvg, res.Machine.GoVersion)
		PrintScale(w, res.Scale)
		return
	}
	where := s.Source
	if s.Embedded {
		where += " (in-process server)"
	}
	fmt.Fprintf(w, "\nesmd bench: %s, %d records of %d bytes, rate %s, BatchSize %d, window %s, %d partitions/shards",
		where, s.Records, s.RecordSize, rateString(s.Rate), s.BatchSize, windowString(s.WindowSeconds), s.Partitions)
	if s.Filter != "" || s.MatchShare < 1 {
		fmt.Fprintf(w, ", %.0f%% match the filter", s.MatchShare*100)
	}
	if s.FunctionDelayMs > 0 {
		fmt.Fprintf(w, ", function delay %.1f ms", s.FunctionDelayMs)
	}
	fmt.Fprintf(w, "\nmachine: %s/%s, %d CPUs, load %v, %s\n", res.Machine.OS, res.Machine.Arch, res.Machine.CPUs, res.Machine.LoadAvg, res.Machine.GoVersion)
	for _, r := range res.Rounds {
		fmt.Fprintf(w, "\n%s round %d\n", r.Kind, r.Index)
		fmt.Fprintf(w, "  records      %d of %d delivered, %d lost, %d duplicates, %d delivered although filtered out\n",
			r.Delivered, r.Wanted, r.Lost, r.Duplicates, r.FilteredIn)
		if len(r.LostSample) > 0 {
			fmt.Fprintf(w, "               lost ids (first %d): %v\n", len(r.LostSample), r.LostSample)
		}
		if r.Duplicates > 0 {
			fmt.Fprintf(w, "               duplicates: %s\n", r.DuplicatesExplained)
		}
		fmt.Fprintf(w, "  throughput   %.0f records/s, %.0f invocations/s over %.2fs; first invocation %.2fs after start\n",
			r.RecordsPerSecond, r.InvocationsPerSecond, r.SteadySeconds, r.StartupSeconds)
		fmt.Fprintf(w, "  latency      produce -> invoke start: %s\n", pctString(r.Latency))
		fmt.Fprintf(w, "  invoke       duration: %s\n", pctString(r.InvokeDuration))
		fmt.Fprintf(w, "  batch size   mean %.1f, p50 %d, p99 %d, max %d\n", r.BatchSize.Mean, r.BatchSize.P50, r.BatchSize.P99, r.BatchSize.Max)
		fmt.Fprintf(w, "  %-12s CPU %.2fs (%.1f us/record), peak RSS %.1f MB\n", r.Kind, r.CPUSeconds, r.CPUMicrosPerRecord, float64(r.PeakRSSBytes)/(1<<20))
		if r.HarnessCPUSeconds > 0 {
			fmt.Fprintf(w, "  harness      CPU %.2fs (%.1f us/record): this process's broker, endpoint and producer meanwhile\n", r.HarnessCPUSeconds, r.HarnessCPUMicrosPerRecord)
		}
		fmt.Fprintf(w, "  errors       %d\n", r.Errors)
		if r.LastError != "" {
			fmt.Fprintf(w, "               last: %s\n", firstLine(r.LastError))
		}
		if r.Interrupted {
			fmt.Fprintln(w, "  interrupted  stopped before every record arrived; the figures are those until then")
		}
		if r.TimedOut {
			fmt.Fprintln(w, "  timed out    no new record arrived for the --timeout")
		}
		if r.ExitError != "" {
			fmt.Fprintf(w, "  child        %s\n", firstLine(r.ExitError))
		}
	}
	if c := res.Compare; c != nil {
		fmt.Fprintf(w, "\ncompare raw: esmd %.0f records/s, raw loop %.0f records/s (medians); esmd/raw ratio %.2f (median of %v)\n",
			c.EsmdMedian, c.RawMedian, c.Ratio, c.Ratios)
		fmt.Fprintf(w, "             CPU per record raw/esmd %.2f, peak RSS esmd/raw %.2f; latency p99 esmd %.2f ms, raw %.2f ms (medians)\n",
			c.CPURatio, c.RSSRatio, c.EsmdP99, c.RawP99)
	}
}

func pctString(p Percentiles) string {
	if p.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (mean %.2f ms, n=%d)",
		p.P50, p.P90, p.P99, p.P999, p.Max, p.Mean, p.Count)
}

func windowString(s int) string {
	if s < 0 {
		return "default"
	}
	return fmt.Sprintf("%ds", s)
}

func rateString(r int) string {
	if r == 0 {
		return "unlimited (backlog produced first)"
	}
	return fmt.Sprintf("%d/s", r)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
