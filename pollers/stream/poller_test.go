package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// These are unit tests of the machinery against an in-memory Client; the
// source packages run the same paths against their real servers.

var (
	errThrottled = errors.New("throttled")
	errExpired   = errors.New("expired")
	errTrimmed   = errors.New("trimmed")
	errNotFound  = errors.New("not found")
)

type fakeShard struct {
	parents []string
	recs    []source.Record
	closed  bool
	trimmed int // records before this index are past the retention
}

// fake is a stream of in-memory shards; an iterator is "shard:index".
type fake struct {
	mu       sync.Mutex
	shards   map[string]*fakeShard
	order    []string
	readErrs []error // returned by the next reads, in order
	listErr  error
	iters    []stream.Position
	// throttleEmpty answers a read at the end of an open shard with a
	// throttle instead of an empty page.
	throttleEmpty bool
}

func newFake() *fake { return &fake{shards: map[string]*fakeShard{}} }

func (f *fake) shard(id string, parents ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards[id] = &fakeShard{parents: parents}
	f.order = append(f.order, id)
}

func (f *fake) put(id string, bodies ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shards[id]
	for _, b := range bodies {
		seq := fmt.Sprintf("%08d", len(s.recs)+1)
		s.recs = append(s.recs, source.Record{Key: b, ID: seq, Seq: seq, Data: []byte(b), Arrival: time.Now().Add(-time.Hour)})
	}
}

func (f *fake) close(id string) { f.mu.Lock(); f.shards[id].closed = true; f.mu.Unlock() }

func (f *fake) Shards(context.Context) ([]stream.Shard, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []stream.Shard
	for _, id := range f.order {
		out = append(out, stream.Shard{ID: id, Parents: f.shards[id].parents})
	}
	return out, nil
}

func (f *fake) Iterator(_ context.Context, id string, pos stream.Position) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.iters = append(f.iters, pos)
	s := f.shards[id]
	if s == nil {
		return "", errNotFound
	}
	switch pos.Type {
	case stream.TrimHorizon:
		return fmt.Sprintf("%s:%d", id, s.trimmed), nil
	case stream.Latest:
		return fmt.Sprintf("%s:%d", id, len(s.recs)), nil
	case stream.AfterSequenceNumber:
		n, _ := strconv.Atoi(pos.Seq)
		if n < s.trimmed {
			return "", errTrimmed
		}
		return fmt.Sprintf("%s:%d", id, n), nil
	}
	return "", fmt.Errorf("iterator type %s", pos.Type)
}

func (f *fake) Read(_ context.Context, id, iter string, limit int) (stream.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.readErrs) > 0 {
		err := f.readErrs[0]
		f.readErrs = f.readErrs[1:]
		return stream.Page{}, err
	}
	sid, n, _ := strings.Cut(iter, ":")
	i, _ := strconv.Atoi(n)
	s := f.shards[sid]
	if f.throttleEmpty && i == len(s.recs) && !s.closed {
		return stream.Page{}, errThrottled
	}
	end := min(i+limit, len(s.recs))
	page := stream.Page{Records: append([]source.Record(nil), s.recs[i:end]...), Next: fmt.Sprintf("%s:%d", id, end)}
	if s.closed && end == len(s.recs) {
		page.Next = ""
	}
	return page, nil
}

func (f *fake) Classify(err error) stream.ErrorKind {
	switch {
	case errors.Is(err, errThrottled):
		return stream.Throttled
	case errors.Is(err, errExpired):
		return stream.Expired
	case errors.Is(err, errTrimmed):
		return stream.Trimmed
	case errors.Is(err, errNotFound):
		return stream.NotFound
	}
	return stream.Other
}

// mem is a Positions that counts its writes.
type mem struct {
	mu     sync.Mutex
	pos    map[string]string
	writes int
}

func (m *mem) Position(_ context.Context, _, lane string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pos[lane]
	return p, ok, nil
}

func (m *mem) SetPosition(_ context.Context, _, lane, pos string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pos == nil {
		m.pos = map[string]string{}
	}
	m.pos[lane] = pos
	m.writes++
	return nil
}

func (m *mem) get(lane string) (string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pos[lane], m.writes
}

func open(t *testing.T, f *fake, c stream.Config) *stream.Poller {
	t.Helper()
	c.Mapping = "m"
	c.EmptyWait, c.MaxWait, c.ListInterval = time.Millisecond, 5*time.Millisecond, 10*time.Millisecond
	p, err := stream.New(context.Background(), f, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func pollN(t *testing.T, p *stream.Poller, n int) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []source.Record
	for len(out) < n {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

func pollNone(t *testing.T, p *stream.Poller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	for {
		recs, err := p.Poll(ctx)
		if err != nil {
			return
		}
		if len(recs) > 0 { // an empty Poll is a shard's end, not a delivery
			t.Fatalf("unexpected records %v", recs)
		}
	}
}

func bodies(recs []source.Record) string {
	var b []string
	for _, r := range recs {
		b = append(b, string(r.Data))
	}
	return strings.Join(b, ",")
}

// A merge: the child starts only after both parents are read to their end,
// every parent record is done and ShardEnd is stored for both.
func TestMergeWaitsForBothParents(t *testing.T) {
	f := newFake()
	f.shard("a")
	f.shard("b")
	f.shard("c", "a", "b")
	f.put("a", "a1", "a2")
	f.put("b", "b1")
	f.put("c", "c1")
	f.close("a")
	f.close("b")
	st := &mem{}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: st}})
	par := pollN(t, p, 3)
	if got := bodies(par); strings.Contains(got, "c") {
		t.Fatalf("child read before its parents were done: %s", got)
	}
	if err := p.Done(context.Background(), par[:1]); err != nil {
		t.Fatal(err)
	}
	pollNone(t, p)
	if err := p.Done(context.Background(), par[1:]); err != nil {
		t.Fatal(err)
	}
	if got := bodies(pollN(t, p, 1)); got != "c1" {
		t.Fatalf("child records %s", got)
	}
	for _, s := range []string{"a", "b"} {
		if pos, _ := st.get(s); pos != stream.ShardEnd {
			t.Fatalf("shard %s checkpoint %q, want %s", s, pos, stream.ShardEnd)
		}
	}
}

// Where a shard starts: checkpoint, ShardEnd, trimmed checkpoint, the
// starting position.
func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		checkpoint string
		trimmed    int
		starting   string
		want       string
	}{
		{name: "TrimHorizon", starting: stream.TrimHorizon, want: "r1,r2,r3"},
		{name: "Latest", starting: stream.Latest, want: "r4"},
		{name: "CheckpointWins", checkpoint: "00000002", starting: stream.Latest, want: "r3"},
		{name: "TrimmedCheckpoint", checkpoint: "00000001", trimmed: 2, want: "r3"},
		{name: "ShardEnd", checkpoint: stream.ShardEnd, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.shard("s")
			f.put("s", "r1", "r2", "r3")
			f.shards["s"].trimmed = tc.trimmed
			st := &mem{}
			if tc.checkpoint != "" {
				st.SetPosition(context.Background(), "m", "s", tc.checkpoint)
			}
			p := open(t, f, stream.Config{Common: stream.Common{Positions: st, StartingPosition: tc.starting}})
			// Wait until the shard was read once (LATEST is taken then).
			for deadline := time.Now().Add(5 * time.Second); len(p.Lag()) == 0 && tc.want != ""; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("shard never read")
				}
			}
			if tc.want == "" {
				pollNone(t, p)
				return
			}
			f.put("s", "r4")
			n := len(strings.Split(tc.want, ","))
			if got := bodies(pollN(t, p, n)[:n]); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// Throttling keeps the iterator; an expired iterator and another failure
// renew it after the last record read: nothing lost or read twice.
func TestReadFaults(t *testing.T) {
	f := newFake()
	f.shard("s")
	f.put("s", "r1", "r2")
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, Limit: 1}})
	got := pollN(t, p, 2)
	f.mu.Lock()
	f.readErrs = []error{errThrottled, errExpired, errors.New("boom"), errThrottled}
	f.mu.Unlock()
	f.put("s", "r3", "r4")
	got = append(got, pollN(t, p, 2)...)
	pollNone(t, p)
	if b := bodies(got); b != "r1,r2,r3,r4" {
		t.Fatalf("got %s", b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.iters) != 3 {
		t.Fatalf("%d iterators %v, want 3 (first, after expiry, after the failure)", len(f.iters), f.iters)
	}
	for _, it := range f.iters[1:] {
		if it.Type != stream.AfterSequenceNumber || it.Seq != "00000002" {
			t.Fatalf("renewed iterator %+v, want after r2", it)
		}
	}
}

// A stream that disappears ends the poller: Poll returns the error.
func TestStreamGone(t *testing.T) {
	f := newFake()
	f.shard("s")
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}}})
	f.mu.Lock()
	f.listErr = fmt.Errorf("list: %w", errNotFound)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Poll(ctx); !errors.Is(err, errNotFound) {
		t.Fatalf("Poll: %v, want the not-found error", err)
	}
}

// Coalesced checkpoints: Done writes nothing itself; the latest position is
// written once, by Close at the latest; ShardEnd is written at once.
func TestCoalescedCheckpoints(t *testing.T) {
	f := newFake()
	f.shard("s")
	f.shard("t")
	f.put("s", "s1", "s2", "s3")
	f.put("t", "t1")
	f.close("t")
	st := &mem{}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: st, CheckpointInterval: time.Hour}})
	recs := pollN(t, p, 4)
	var s, tt []source.Record
	for _, r := range recs {
		if r.Lane == "s" {
			s = append(s, r)
		} else {
			tt = append(tt, r)
		}
	}
	// The first Done wakes the writer at once; the next ones wait.
	if err := p.Done(context.Background(), s[:1]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if pos, _ := st.get("s"); pos == s[0].Seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first checkpoint never written")
		}
	}
	for _, r := range s[1:] {
		if err := p.Done(context.Background(), []source.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Done(context.Background(), tt); err != nil {
		t.Fatal(err)
	}
	if pos, _ := st.get("t"); pos != stream.ShardEnd {
		t.Fatalf("closed shard checkpoint %q, want ShardEnd at once", pos)
	}
	if pos, _ := st.get("s"); pos != s[0].Seq {
		t.Fatalf("checkpoint %q before the interval, want %q", pos, s[0].Seq)
	}
	p.Close()
	pos, writes := st.get("s")
	if pos != s[2].Seq || writes != 3 {
		t.Fatalf("after Close: checkpoint %q after %d writes, want %q after 3", pos, writes, s[2].Seq)
	}
}

// IteratorAge comes from the last record's arrival when the source does
// not say how far behind it is.
func TestLagFromArrival(t *testing.T) {
	f := newFake()
	f.shard("s")
	f.put("s", "r1")
	f.throttleEmpty = true
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}}})
	pollN(t, p, 1)
	// The record arrived an hour ago.
	if age, ok := p.Lag()["s"]; !ok || age < 59*time.Minute || age > 61*time.Minute {
		t.Fatalf("IteratorAge %v (%v), want about 1h", age, ok)
	}
}

// A shard never has more than MaxPending records read and not done: reads
// ask for what is left.
func TestMaxPending(t *testing.T) {
	f := newFake()
	f.shard("s")
	for i := range 25 {
		f.put("s", fmt.Sprint(i))
	}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, MaxPending: 10, Limit: 7}})
	got := pollN(t, p, 10)
	pollNone(t, p)
	if len(got) != 10 {
		t.Fatalf("%d records pending, want 10", len(got))
	}
	if err := p.Done(context.Background(), got[:4]); err != nil {
		t.Fatal(err)
	}
	more := pollN(t, p, 4)
	pollNone(t, p)
	if b := bodies(more); b != "10,11,12,13" {
		t.Fatalf("after 4 done: %s", b)
	}
}

// memBatch is a mem that also stores several lanes in one write.
type memBatch struct {
	mem
	batches []int // lanes per SetPositions
}

func (m *memBatch) SetPositions(_ context.Context, _ string, pos map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pos == nil {
		m.pos = map[string]string{}
	}
	for l, p := range pos {
		m.pos[l] = p
	}
	m.batches = append(m.batches, len(pos))
	return nil
}

// The coalescing writer stores every shard's position in one write when
// the store can (PositionBatcher).
func TestCoalescedBatchWrite(t *testing.T) {
	f := newFake()
	for _, s := range []string{"a", "b", "c"} {
		f.shard(s)
		f.put(s, s+"1")
	}
	st := &memBatch{}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: st, CheckpointInterval: time.Hour}})
	recs := pollN(t, p, 3)
	// Hold the writer in its interval with a first write, then finish
	// the three shards' records: they are written together by Close.
	if err := p.Done(context.Background(), recs[:1]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		st.mu.Lock()
		n := len(st.batches)
		st.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first write never came")
		}
	}
	if err := p.Done(context.Background(), recs[1:]); err != nil {
		t.Fatal(err)
	}
	p.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	if fmt.Sprint(st.batches) != "[1 2]" || st.writes != 0 || len(st.pos) != 3 {
		t.Fatalf("writes of %v lanes, %d single writes, positions %v", st.batches, st.writes, st.pos)
	}
}

// A read waits until a quarter of MaxPending is free, not for each record.
func TestMaxPendingQuarter(t *testing.T) {
	f := newFake()
	f.shard("s")
	for i := range 20 {
		f.put("s", fmt.Sprint(i))
	}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, MaxPending: 8, Limit: 8}})
	got := pollN(t, p, 8)
	if err := p.Done(context.Background(), got[:1]); err != nil {
		t.Fatal(err)
	}
	pollNone(t, p) // one free: less than a quarter
	if err := p.Done(context.Background(), got[1:2]); err != nil {
		t.Fatal(err)
	}
	if b := bodies(pollN(t, p, 2)); b != "8,9" {
		t.Fatalf("after 2 done: %s", b)
	}
}

// TestClosedShardEnds: a shard read to its end is reported by EndedLanes
// once its last records were handed out by a Poll, and only then; an open
// shard never is.
func TestClosedShardEnds(t *testing.T) {
	f := newFake()
	f.shard("a")
	f.shard("b")
	f.put("a", "a1", "a2")
	f.put("b", "b1")
	f.close("a")
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}}})
	var got []source.Record
	var ended []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(ended) == 0 {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("after %d records, no lane ended: %v", len(got), err)
		}
		got = append(got, recs...)
		ended = append(ended, p.EndedLanes()...)
	}
	if len(ended) != 1 || ended[0] != "a" {
		t.Fatalf("ended lanes %v, want [a]", ended)
	}
	var a []string
	for _, r := range got {
		if r.Lane == "a" {
			a = append(a, string(r.Data))
		}
	}
	if strings.Join(a, ",") != "a1,a2" {
		t.Fatalf("shard a ended before its records were handed out: %v", a)
	}
	f.put("b", "b2")
	pollN(t, p, 1)
	if more := p.EndedLanes(); len(more) != 0 {
		t.Fatalf("ended lanes %v after an open shard's records", more)
	}
}

// gated is a PositionBatcher whose writes wait at a gate, and fail while
// fail is set.
type gated struct {
	memBatch
	entered chan struct{} // a write reached the gate
	gate    chan struct{}
	fail    bool
}

func (g *gated) SetPositions(ctx context.Context, m string, pos map[string]string) error {
	g.entered <- struct{}{}
	<-g.gate
	g.mu.Lock()
	fail := g.fail
	g.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return g.memBatch.SetPositions(ctx, m, pos)
}

// Without a CheckpointInterval, Done returns once its position is stored,
// and the Dones that come while a write is under way share the next write
// (group commit). A failed write fails its Done and is written again by
// the next one.
func TestSyncGroupCommit(t *testing.T) {
	f := newFake()
	for _, s := range []string{"a", "b", "c"} {
		f.shard(s)
		f.put(s, s+"1", s+"2")
	}
	st := &gated{entered: make(chan struct{}, 8), gate: make(chan struct{})}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: st}})
	recs := pollN(t, p, 6)
	first := map[string]source.Record{}
	second := map[string]source.Record{}
	for _, r := range recs {
		if _, ok := first[r.Lane]; !ok {
			first[r.Lane] = r
		} else {
			second[r.Lane] = r
		}
	}
	done := func(r source.Record) chan error {
		ch := make(chan error, 1)
		go func() { ch <- p.Done(context.Background(), []source.Record{r}) }()
		return ch
	}
	a := done(first["a"])
	<-st.entered // a's write is under way
	b, c := done(first["b"]), done(first["c"])
	// b and c note their positions and wait for the write after a's.
	for deadline := time.Now().Add(10 * time.Second); stream.Noted(p) < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b and c never noted their positions")
		}
	}
	if len(b) > 0 || len(c) > 0 {
		t.Fatal("Done returned before its position was stored")
	}
	st.gate <- struct{}{} // a's write
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	<-st.entered // the next write: b's and c's together
	st.gate <- struct{}{}
	for _, ch := range []chan error{b, c} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	batches := fmt.Sprint(st.batches)
	st.mu.Unlock()
	if batches != "[1 2]" {
		t.Fatalf("writes of %s lanes, want [1 2]: a alone, then b and c together", batches)
	}
	for lane, r := range first {
		if pos, _ := st.get(lane); pos != r.Seq {
			t.Fatalf("%s at %q, want %q", lane, pos, r.Seq)
		}
	}

	// A failed write fails its Done; the position is written by the next.
	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	a = done(second["a"])
	<-st.entered
	st.gate <- struct{}{}
	if err := <-a; err == nil {
		t.Fatal("Done of a failed write returned nil")
	}
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	b = done(second["b"])
	<-st.entered
	st.gate <- struct{}{}
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	for _, lane := range []string{"a", "b"} {
		if pos, _ := st.get(lane); pos != second[lane].Seq {
			t.Fatalf("%s at %q after the retry, want %q", lane, pos, second[lane].Seq)
		}
	}
}

// A shard never has more than its share of MaxPendingBytes read and not
// done once MinPending records are: a read asks for what the share has
// left, at the mean size of the last read, and waits for a quarter of it.
func TestMaxPendingBytes(t *testing.T) {
	f := newFake()
	f.shard("s")
	for i := range 30 {
		f.put("s", fmt.Sprintf("%019d", i)) // 19 bytes each
	}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, MaxPendingBytes: 100, MinPending: 2}})
	// First read: MinPending (the mean is not known yet); then what 100
	// bytes hold at 19 bytes each: 5 in all.
	got := pollN(t, p, 5)
	pollNone(t, p)
	if len(got) != 5 {
		t.Fatalf("%d records pending, want 5", len(got))
	}
	if err := p.Done(context.Background(), got[:1]); err != nil {
		t.Fatal(err)
	}
	pollNone(t, p) // 24 bytes free: less than a quarter of 100
	if err := p.Done(context.Background(), got[1:3]); err != nil {
		t.Fatal(err)
	}
	more := pollN(t, p, 3)
	pollNone(t, p)
	if len(more) != 3 || string(more[0].Data) != fmt.Sprintf("%019d", 5) {
		t.Fatalf("after 3 done: %s, want the next 3", bodies(more))
	}
}

// A record larger than a shard's share of MaxPendingBytes is still read,
// one at a time: the shard never starves.
func TestMaxPendingBytesLargeRecords(t *testing.T) {
	f := newFake()
	f.shard("s")
	big := strings.Repeat("x", 500)
	for i := range 3 {
		f.put("s", fmt.Sprint(i)+big)
	}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, MaxPendingBytes: 100, MinPending: 1}})
	for i := range 3 {
		got := pollN(t, p, 1)
		pollNone(t, p)
		if len(got) != 1 || !strings.HasPrefix(string(got[0].Data), fmt.Sprint(i)+"x") {
			t.Fatalf("read %d: %d records, want record %d alone", i, len(got), i)
		}
		if err := p.Done(context.Background(), got); err != nil {
			t.Fatal(err)
		}
	}
}

// A read bounded by MaxPendingBytes asks for whole batches (BatchSize).
func TestMaxPendingBytesWholeBatches(t *testing.T) {
	f := newFake()
	f.shard("s")
	for i := range 200 {
		f.put("s", fmt.Sprintf("%010d", i)) // 10 bytes each
	}
	p := open(t, f, stream.Config{Common: stream.Common{Positions: &mem{}, MaxPendingBytes: 1000, MinPending: 2, BatchSize: 30}})
	// MinPending first, then 980 bytes' worth (98 records) cut to whole
	// batches of 30: 90.
	got := pollN(t, p, 92)
	pollNone(t, p)
	if len(got) != 92 {
		t.Fatalf("%d records pending, want 92", len(got))
	}
}
