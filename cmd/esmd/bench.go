package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/esmd/esmd/bench"
)

// benchExe, when set (by tests), is the esmd binary bench runs as its
// children instead of this process's own executable.
var benchExe string

// benchCmd is `esmd bench`: one mapping end to end, from records produced
// into a source to invocations of a function, measured (package bench).
// `esmd bench --raw-child` is the raw loop of --compare raw, which bench
// runs as a child process with its spec on stdin.
func benchCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "--raw-child" {
		return bench.RawMain(ctx, stdin)
	}
	cfg, o, err := parseBenchFlags(args, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	exe := benchExe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("bench: find the esmd binary: %w", err)
		}
	}
	cfg.Exe = exe
	res, err := bench.Run(ctx, *cfg, bench.Output{W: stderr, Terminal: isTerminal(stderr), Version: versionString()})
	if res != nil && len(res.Rounds)+btoi(res.Scale != nil) > 0 {
		bench.PrintSummary(stdout, res)
		if o.json != "" {
			if werr := writeJSON(o.json, res); werr != nil {
				return werr
			}
		}
		if o.report != "" {
			if werr := bench.WriteReport(o.report, res); werr != nil {
				return werr
			}
			fmt.Fprintf(stdout, "report: %s\n", o.report)
		}
	}
	return err
}

// benchOpts are the flags of esmd bench that are not the benchmark's.
type benchOpts struct{ json, report string }

// parseBenchFlags parses esmd bench's flags; -h gives errHelp.
func parseBenchFlags(args []string, stderr io.Writer) (*bench.Config, *benchOpts, error) {
	fs := flag.NewFlagSet("esmd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c, o := &bench.Config{}, &benchOpts{}
	var kafka, serveArgs listFlag
	fs.StringVar(&c.Source, "source", "kafka", "event source: "+strings.Join(bench.Sources, ", ")+"; kafka without --bootstrap-servers runs an in-process broker")
	fs.IntVar(&c.Records, "records", 100000, "records produced per round")
	fs.IntVar(&c.RecordSize, "record-size", 1024, "bytes per record body")
	fs.IntVar(&c.Rate, "rate", 0, "records produced per second while the mapping runs; 0 produces them all first (a backlog) as fast as the source takes them")
	fs.IntVar(&c.BatchSize, "batch-size", 100, "the mapping's BatchSize")
	c.Window = -1
	fs.Var(windowFlag{&c.Window}, "window", "the mapping's MaximumBatchingWindowInSeconds as a `duration` of whole seconds, e.g. 0s or 1s (default: the source's)")
	fs.IntVar(&c.ParallelizationFactor, "parallelization-factor", 0, "the mapping's ParallelizationFactor (Kinesis, DynamoDB Streams)")
	fs.IntVar(&c.Partitions, "partitions", 0, "Kafka partitions, or Kinesis/DynamoDB Streams shards (default 8 for Kafka, 4 for streams)")
	fs.IntVar(&c.Partitions, "shards", 0, "the same as --partitions")
	fs.StringVar(&c.Filter, "filter", "", "a FilterCriteria pattern (records carry \"kind\":\"match\" or \"skip\"; default with --match-share below 1: the source's pattern on kind)")
	fs.Float64Var(&c.MatchShare, "match-share", 1, "share of records whose kind is \"match\"")
	fs.DurationVar(&c.FunctionDelay, "function-delay", 0, "how long the built-in function takes per invocation")
	fs.StringVar(&c.LambdaEndpoint, "lambda-endpoint", "", "invoke a real function at this Lambda Invoke API (the bench counts records on the way)")
	fs.StringVar(&c.InvokeMode, "invoke-mode", "aws", "esmd's --invoke-mode: aws, or rie for the Runtime Interface Emulator")
	fs.StringVar(&c.Compare, "compare", "", "raw: also run a plain client loop (receive, POST Invoke, acknowledge) in alternating rounds and print the ratio")
	fs.IntVar(&c.Rounds, "rounds", 0, "rounds of each kind (default 1, 3 with --compare)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "end a round when no new record arrived for this long")
	fs.Var(&kafka, "bootstrap-servers", "Kafka brokers host:port[,host:port] to use instead of the in-process broker")
	fs.StringVar(&c.MQBroker, "broker", "", "RabbitMQ amqp:// or ActiveMQ stomp:// URL, with user:password")
	fs.StringVar(&c.DocDBURI, "docdb-uri", "", "mongodb:// URI of a DocumentDB (MongoDB) replica set")
	fs.Var(&serveArgs, "esmd-flag", "a flag passed on to esmd run (repeatable), e.g. --esmd-flag=--kinesis-checkpoint-interval=0")
	fs.IntVar(&c.Lanes, "lanes", 0, "scale mode: run this many lanes, idle or trickling, and measure memory per lane, goroutines and idle CPU")
	fs.IntVar(&c.Trickle, "trickle", 0, "scale mode: records per second spread over the lanes (0: idle)")
	fs.DurationVar(&c.Idle, "measure", 10*time.Second, "scale mode: how long to measure once every lane runs")
	fs.StringVar(&o.json, "json", "", "write the result as JSON to this file (schema: docs/performance.md)")
	fs.StringVar(&o.report, "report", "", "write a self-contained HTML report into this directory")
	fs.StringVar(&c.ProfileDir, "profile", "", "write a CPU profile of each round's child (esmd or the raw loop) into this directory, <kind>-round<N>.pprof, and a heap profile taken at its peak heap, <kind>-round<N>.heap.pprof")
	if err := parse(fs, args); err != nil {
		return nil, nil, err
	}
	for _, k := range kafka {
		c.KafkaBootstrap = append(c.KafkaBootstrap, strings.Split(k, ",")...)
	}
	c.ServeArgs = serveArgs
	c.Defaults()
	if err := c.Validate(); err != nil && !strings.Contains(err.Error(), "binary") {
		fmt.Fprintln(stderr, "esmd bench:", err)
		return nil, nil, errUsage
	}
	return c, o, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// windowFlag is --window: a duration, negative (unset) for the source's
// default.
type windowFlag struct{ d *time.Duration }

func (w windowFlag) String() string {
	if w.d == nil || *w.d < 0 {
		return ""
	}
	return w.d.String()
}

func (w windowFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*w.d = d
	return nil
}

// profileEnv names the file a process writes its CPU profile to, from
// start to exit; esmd bench --profile sets it for its children.
const profileEnv = "ESMD_CPUPROFILE"

// traceEnv names the file a process writes its execution trace to, from
// start to exit (go tool trace): where goroutines wait, not only where the
// CPU goes.
const traceEnv = "ESMD_TRACE"

// memProfileEnv names the file a process writes a heap profile to, taken
// when the heap in use was at its highest (sampled every 20 ms), for
// finding what makes the peak RSS; esmd bench --profile sets it for its
// children.
const memProfileEnv = "ESMD_MEMPROFILE"

// startProfile starts the CPU profile $ESMD_CPUPROFILE, the execution
// trace $ESMD_TRACE and the heap profile $ESMD_MEMPROFILE ask for, and
// returns the function that writes them.
func startProfile(stderr io.Writer) func() {
	stopMem := startMemProfile(stderr)
	stopCPU := startCPUProfile(stderr)
	stopTrace := startTrace(stderr)
	return func() {
		stopTrace()
		stopCPU()
		stopMem()
	}
}

func startTrace(stderr io.Writer) func() {
	return startToFile(stderr, traceEnv, "trace", trace.Start, trace.Stop)
}

func startCPUProfile(stderr io.Writer) func() {
	return startToFile(stderr, profileEnv, "CPU profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startToFile starts writing what start writes into the file $env names,
// when it names one, and returns the function that stops it and closes the
// file. what names it in errors.
func startToFile(stderr io.Writer, env, what string, start func(io.Writer) error, stop func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "esmd: %s: %v\n", what, err)
		return func() {}
	}
	if err := start(f); err != nil {
		fmt.Fprintf(stderr, "esmd: %s: %v\n", what, err)
		f.Close()
		return func() {}
	}
	return func() {
		stop()
		f.Close()
	}
}

// startMemProfile writes the heap profile $ESMD_MEMPROFILE asks for each
// time the heap in use reaches a new high, checked every 20 ms, until the
// returned function is called.
func startMemProfile(stderr io.Writer) func() {
	path := os.Getenv(memProfileEnv)
	if path == "" {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var peak uint64
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak+peak/20 {
				continue
			}
			peak = ms.HeapInuse
			f, err := os.Create(path)
			if err != nil {
				fmt.Fprintln(stderr, "esmd: heap profile:", err)
				return
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				fmt.Fprintln(stderr, "esmd: heap profile:", err)
			}
			f.Close()
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
