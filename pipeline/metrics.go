package pipeline

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Metrics counts, per mapping, the events AWS reports in its opt-in event
// source mapping metrics (spec 9.2: PolledEventCount, FilteredOutEventCount,
// InvokedEventCount, FailedInvokeEventCount, DroppedEventCount,
// OnFailureDestinationDeliveredEventCount, DeletedEventCount) and reads the
// per-lane figures of running pollers (spec 9.1: IteratorAge of stream
// sources, OffsetLag of Kafka). It serves them in the Prometheus text
// format; one Metrics is shared by the Runners of every source.
//
// Counters of a mapping live as long as the process (they are monotonic,
// as Prometheus counters must be); lane figures are shown only while the
// mapping's pipeline runs, as AWS emits none for a disabled mapping.
type Metrics struct {
	// Worker is this esmd's id among the workers that share a store; it
	// labels esmd_lane_leased. Set it before serving.
	Worker string

	mu   sync.Mutex
	maps map[string]*mappingMetrics
}

// NewMetrics returns an empty Metrics.
func NewMetrics() *Metrics { return &Metrics{maps: map[string]*mappingMetrics{}} }

// Lagger is optionally implemented by a source.Poller: per lane (shard), the
// IteratorAge, the age of the last record read when it was handed out.
type Lagger interface {
	Lag() map[string]time.Duration
}

// OffsetLagger is optionally implemented by a source.Poller: per lane (topic-partition),
// the records written to the partition but not yet processed.
type OffsetLagger interface {
	OffsetLag() map[string]int64
}

// Leaser is optionally implemented by a source.Poller whose lanes are
// shared among workers through leases (stream shards with a PostgreSQL
// store): the lanes this worker holds.
type Leaser interface {
	Leased() []string
}

// counter names, in output order, with their AWS metric names.
const (
	cPolled = iota
	cFilteredOut
	cInvoked
	cFailedInvoke
	cDropped
	cOnFailureDelivered
	cDeleted
	nCounters
)

var counterNames = [nCounters]struct{ prom, aws string }{
	{"esmd_polled_events_total", "PolledEventCount"},
	{"esmd_filtered_out_events_total", "FilteredOutEventCount"},
	{"esmd_invoked_events_total", "InvokedEventCount"},
	{"esmd_failed_invoke_events_total", "FailedInvokeEventCount"},
	{"esmd_dropped_events_total", "DroppedEventCount"},
	{"esmd_on_failure_destination_delivered_events_total", "OnFailureDestinationDeliveredEventCount"},
	{"esmd_deleted_events_total", "DeletedEventCount"},
}

// mappingMetrics is one mapping's counters and its running poller.
type mappingMetrics struct {
	labels string // uuid="...",function="...",source="..."
	c      [nCounters]atomic.Int64

	mu     sync.Mutex
	poller source.Poller // nil while not running
}

func (mm *mappingMetrics) add(i int, n int) {
	if mm != nil && n > 0 {
		mm.c[i].Add(int64(n))
	}
}

// mapping returns the entry of m, created on first use.
func (ms *Metrics) mapping(m *esm.Mapping) *mappingMetrics {
	if ms == nil {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	mm, ok := ms.maps[m.UUID]
	if !ok {
		mm = &mappingMetrics{labels: fmt.Sprintf(`uuid=%s,function=%s,source=%s`,
			quote(m.UUID), quote(m.FunctionArn), quote(string(m.Source)))}
		ms.maps[m.UUID] = mm
	}
	return mm
}

func (mm *mappingMetrics) attach(p source.Poller) {
	if mm == nil {
		return
	}
	mm.mu.Lock()
	mm.poller = p
	mm.mu.Unlock()
}

func (mm *mappingMetrics) detach(p source.Poller) {
	if mm == nil {
		return
	}
	mm.mu.Lock()
	if mm.poller == p {
		mm.poller = nil
	}
	mm.mu.Unlock()
}

// quote returns s as a Prometheus label value.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// WriteTo writes every metric in the Prometheus text exposition format
// (version 0.0.4), mappings in UUID order, lanes in name order.
func (ms *Metrics) WriteTo(w io.Writer) (int64, error) {
	ms.mu.Lock()
	ids := make([]string, 0, len(ms.maps))
	for id := range ms.maps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	maps := make([]*mappingMetrics, len(ids))
	for i, id := range ids {
		maps[i] = ms.maps[id]
	}
	ms.mu.Unlock()

	cw := &countWriter{w: bufio.NewWriter(w)}
	for i, n := range counterNames {
		fmt.Fprintf(cw, "# HELP %s Events counted as AWS's %s metric.\n# TYPE %s counter\n", n.prom, n.aws, n.prom)
		for _, mm := range maps {
			fmt.Fprintf(cw, "%s{%s} %d\n", n.prom, mm.labels, mm.c[i].Load())
		}
	}
	type lanes struct {
		mm     *mappingMetrics
		age    map[string]time.Duration
		off    map[string]int64
		leased []string
	}
	var figs []lanes
	for _, mm := range maps {
		mm.mu.Lock()
		p := mm.poller
		mm.mu.Unlock()
		if p == nil {
			continue
		}
		l := lanes{mm: mm}
		if lg, ok := p.(Lagger); ok {
			l.age = lg.Lag()
		}
		if ol, ok := p.(OffsetLagger); ok {
			l.off = ol.OffsetLag()
		}
		if le, ok := p.(Leaser); ok {
			l.leased = le.Leased()
			slices.SortFunc(l.leased, compareLanes)
		}
		figs = append(figs, l)
	}
	fmt.Fprint(cw, "# HELP esmd_iterator_age_milliseconds AWS's IteratorAge: age of the last record read from the lane when it was handed to the function.\n# TYPE esmd_iterator_age_milliseconds gauge\n")
	for _, l := range figs {
		for _, lane := range sortedKeys(l.age) {
			fmt.Fprintf(cw, "esmd_iterator_age_milliseconds{%s,lane=%s} %d\n", l.mm.labels, quote(lane), l.age[lane].Milliseconds())
		}
	}
	fmt.Fprint(cw, "# HELP esmd_offset_lag AWS's OffsetLag: records written to the partition and not yet processed.\n# TYPE esmd_offset_lag gauge\n")
	for _, l := range figs {
		for _, lane := range sortedKeys(l.off) {
			fmt.Fprintf(cw, "esmd_offset_lag{%s,lane=%s} %d\n", l.mm.labels, quote(lane), l.off[lane])
		}
	}
	fmt.Fprint(cw, "# HELP esmd_lane_leased Lanes this worker holds the lease of (stream shards shared among workers through --store postgres).\n# TYPE esmd_lane_leased gauge\n")
	for _, l := range figs {
		for _, lane := range l.leased {
			fmt.Fprintf(cw, "esmd_lane_leased{%s,lane=%s,worker=%s} 1\n", l.mm.labels, quote(lane), quote(ms.Worker))
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil && cw.err == nil {
		cw.err = err
	}
	return cw.n, cw.err
}

// ServeHTTP serves WriteTo to GET and HEAD requests.
func (ms *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	ms.WriteTo(w) //nolint:errcheck // the client went away
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return compareLanes(a, b) })
	return keys
}

// compareLanes orders lanes by name, with numeric suffixes in number order
// (topic-2 before topic-10).
func compareLanes(a, b string) int {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa != pb || na < 0 || nb < 0 {
		return strings.Compare(a, b)
	}
	return na - nb
}

func splitNum(s string) (string, int) {
	i := strings.LastIndexAny(s, "-:")
	if i < 0 {
		return s, -1
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, -1
	}
	return s[:i+1], n
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
