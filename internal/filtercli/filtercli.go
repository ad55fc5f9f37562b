// Package filtercli implements "esmd filter": check a Lambda FilterCriteria
// pattern against an event or a source record, the way an event source
// mapping would, and explain why a pattern is rejected.
package filtercli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/esmd/esmd/filter"
)

// Exit codes.
const (
	ExitMatch   = 0
	ExitNoMatch = 1
	ExitError   = 2 // invalid pattern, invalid event or bad usage
)

const usage = `usage: esmd filter --pattern P [--pattern P ...] --event E [--source S] [--dialect D]

Reports whether event E matches the filter patterns (ORed like
FilterCriteria.Filters): prints "match" (exit 0) or "no match" (exit 1). An
invalid pattern prints the reason (exit 2); Lambda's API would answer
InvalidParameterValueException "Invalid filter pattern definition.".

P and E are JSON text, @file, or - / @- for standard input.

With --source, E is one record as it appears in the Lambda event for that
source (an SQS message with its string body, a Kinesis record with base64
kinesis.data, a Kafka record with base64 value, an MQ message with base64
data, a DynamoDB stream record), and the source's decoding applies. A whole
Lambda event ({"Records": [...]}, Kafka "records", MQ "messages" or
"rmqMessagesByQueue") is checked record by record; the exit code is 0 when
any record matches.

Flags:
`

// patternList collects repeated --pattern flags.
type patternList []string

func (p *patternList) String() string     { return strings.Join(*p, " ") }
func (p *patternList) Set(v string) error { *p = append(*p, v); return nil }

// Main runs "esmd filter" with args (the arguments after "filter") and
// returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("esmd filter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var patterns patternList
	fs.Var(&patterns, "pattern", "filter pattern `P` (JSON, @file or -); repeat to OR several filters")
	event := fs.String("event", "", "event or source record `E` (JSON, @file or -)")
	source := fs.String("source", "", "apply the decoding of event source `S`: sqs, kinesis, dynamodb, kafka, mq (rabbitmq, activemq) or docdb")
	dialect := fs.String("dialect", "lambda", "grammar `D`: lambda (what event source mappings accept) or eventbridge (the full EventBridge grammar)")
	maxFilters := fs.Int("max-filters", filter.DefaultMaxFilters, "maximum number `N` of patterns, the mapping's filter quota (Lambda default 5, up to 10; 0: no limit)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitMatch
		}
		return ExitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "esmd filter: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return ExitError
	}
	if len(patterns) == 0 || *event == "" {
		fmt.Fprintln(stderr, "esmd filter: --pattern and --event are required")
		fs.Usage()
		return ExitError
	}
	if err := ctx.Err(); err != nil {
		fmt.Fprintf(stderr, "esmd filter: %v\n", err)
		return ExitError
	}
	src, err := filter.ParseSource(*source)
	if err != nil {
		fmt.Fprintf(stderr, "esmd filter: %v\n", err)
		return ExitError
	}
	var d filter.Dialect
	switch strings.ToLower(*dialect) {
	case "lambda":
		d = filter.Lambda
	case "eventbridge":
		d = filter.EventBridge
	default:
		fmt.Fprintf(stderr, "esmd filter: unknown dialect %q (want lambda or eventbridge)\n", *dialect)
		return ExitError
	}

	in := &inputs{stdin: stdin}
	texts := make([]string, len(patterns))
	for i, p := range patterns {
		b, err := in.read(p)
		if err != nil {
			fmt.Fprintf(stderr, "esmd filter: pattern %d: %v\n", i+1, err)
			return ExitError
		}
		texts[i] = string(b)
	}
	ev, err := in.read(*event)
	if err != nil {
		fmt.Fprintf(stderr, "esmd filter: event: %v\n", err)
		return ExitError
	}

	opts := []filter.Option{filter.WithDialect(d), filter.WithMaxFilters(*maxFilters)}
	if *source != "" {
		opts = append(opts, filter.WithSource(src))
	}
	m, err := filter.Compile(texts, opts...)
	if err != nil {
		var pe *filter.PatternError
		if errors.As(err, &pe) {
			where := "patterns"
			if pe.Index >= 0 {
				where = fmt.Sprintf("pattern %d", pe.Index+1)
			}
			fmt.Fprintf(stderr, "esmd filter: invalid %s: %s\n", where, pe.Detail())
			fmt.Fprintf(stderr, "(CreateEventSourceMapping would fail with InvalidParameterValueException: %s)\n", filter.InvalidPatternMessage)
		} else {
			fmt.Fprintf(stderr, "esmd filter: %v\n", err)
		}
		return ExitError
	}
	if !json.Valid(ev) {
		fmt.Fprintln(stderr, "esmd filter: event is not valid JSON")
		return ExitError
	}

	records, batch := splitEvent(ev, src)
	if !batch {
		ok, err := m.Match(src, ev)
		if err != nil {
			fmt.Fprintf(stderr, "esmd filter: %v\n", err)
			return ExitError
		}
		return report(stdout, "", ok)
	}
	any := false
	for i, r := range records {
		ok, err := m.Match(src, r)
		if err != nil {
			fmt.Fprintf(stderr, "esmd filter: record %d: %v\n", i, err)
			return ExitError
		}
		report(stdout, fmt.Sprintf("record %d: ", i), ok)
		any = any || ok
	}
	if any {
		return ExitMatch
	}
	return ExitNoMatch
}

func report(w io.Writer, prefix string, ok bool) int {
	if ok {
		fmt.Fprintln(w, prefix+"match")
		return ExitMatch
	}
	fmt.Fprintln(w, prefix+"no match")
	return ExitNoMatch
}

// inputs reads flag values, allowing standard input once.
type inputs struct {
	stdin     io.Reader
	usedStdin bool
}

func (in *inputs) read(v string) ([]byte, error) {
	switch {
	case v == "-" || v == "@-":
		if in.usedStdin {
			return nil, errors.New("standard input can be used only once")
		}
		in.usedStdin = true
		if in.stdin == nil {
			return nil, errors.New("no standard input")
		}
		return io.ReadAll(in.stdin)
	case strings.HasPrefix(v, "@"):
		return os.ReadFile(v[1:])
	}
	return []byte(v), nil
}

// splitEvent recognises a whole Lambda event and returns its records.
func splitEvent(ev []byte, src filter.Source) ([][]byte, bool) {
	if src == filter.SourceNone {
		return nil, false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(ev, &top) != nil {
		return nil, false
	}
	var out [][]byte
	list := func(raw json.RawMessage) bool {
		var rs []json.RawMessage
		if json.Unmarshal(raw, &rs) != nil {
			return false
		}
		for _, r := range rs {
			out = append(out, r)
		}
		return true
	}
	groups := func(raw json.RawMessage) bool {
		var g map[string]json.RawMessage
		if json.Unmarshal(raw, &g) != nil {
			return false
		}
		keys := make([]string, 0, len(g))
		for k := range g {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !list(g[k]) {
				return false
			}
		}
		return true
	}
	for _, k := range []string{"Records", "messages"} {
		if raw, ok := top[k]; ok && list(raw) {
			return out, true
		}
	}
	for _, k := range []string{"records", "rmqMessagesByQueue"} {
		if raw, ok := top[k]; ok && groups(raw) {
			return out, true
		}
	}
	return nil, false
}
